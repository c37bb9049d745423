"""A RabbitMQ client for eddy's AMQP collector tests, with pika, as a producer would use it.

Usage: amqp_client.py PORT COMMAND [ARGS]
  ready                          exit 0 once a connection opens
  declare QUEUE [DEAD_QUEUE]     a durable queue (dead-lettering to DEAD_QUEUE if given)
  publish QUEUE                  one message per JSON line on stdin:
                                 {"body": text, "body_hex": hex, "id": message id,
                                  "type": content type, "headers": {...}}; confirmed
  count QUEUE                    prints the messages ready in the queue
  drain QUEUE                    prints each message's body (as JSON lines) and acks it
Exits non-zero on any error."""
import binascii
import json
import sys

import pika

port, command, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
params = pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1, socket_timeout=5)
connection = pika.BlockingConnection(params)
channel = connection.channel()

if command == "declare":
    arguments = {}
    if len(args) > 1:
        channel.queue_declare(queue=args[1], durable=True)
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": args[1]}
    channel.queue_declare(queue=args[0], durable=True, arguments=arguments)
elif command == "publish":
    channel.confirm_delivery()
    for line in sys.stdin:
        m = json.loads(line)
        body = binascii.unhexlify(m["body_hex"]) if "body_hex" in m else m["body"].encode()
        properties = pika.BasicProperties(
            message_id=m.get("id"), content_type=m.get("type"), headers=m.get("headers"),
            delivery_mode=2)
        channel.basic_publish(exchange="", routing_key=args[0], body=body, properties=properties)
elif command == "count":
    print(channel.queue_declare(queue=args[0], passive=True).method.message_count)
elif command == "drain":
    while True:
        method, _, body = channel.basic_get(queue=args[0], auto_ack=True)
        if method is None:
            break
        print(json.dumps(body.decode("utf-8", "replace")))
elif command != "ready":
    sys.exit("unknown command " + command)
connection.close()
