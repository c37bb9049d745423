"""Drives eddy's schema registry with Confluent's own Python client (confluent-kafka's
SchemaRegistryClient), as a producer's tooling would. Usage: confluent_registry.py URL TOKEN.
Prints one JSON object of what it saw; exits non-zero on any surprise."""
import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

url, token = sys.argv[1], sys.argv[2]
config = {"url": url, "basic.auth.user.info": "producer:" + token}
client = SchemaRegistryClient(config)
# The client caches what it registered: fetches by id go through one that has seen nothing.
fresh = SchemaRegistryClient(config)

V1 = json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"}, {"name": "total", "type": "long"}]})
V2 = json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"}, {"name": "total", "type": "long"},
    {"name": "currency", "type": "string", "default": "EUR"}]})
BAD = json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "long"}, {"name": "total", "type": "string"}]})
CLICK = json.dumps({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]})

seen = {}
subject = "orders-value"
seen["id1"] = client.register_schema(subject, Schema(V1, "AVRO"))
seen["id1_again"] = client.register_schema(subject, Schema(V1, "AVRO"))
seen["fetched"] = json.loads(fresh.get_schema(seen["id1"]).schema_str)
seen["compatible_v2"] = client.test_compatibility(subject, Schema(V2, "AVRO"))
seen["compatible_bad"] = client.test_compatibility(subject, Schema(BAD, "AVRO"))
seen["id2"] = client.register_schema(subject, Schema(V2, "AVRO"))
try:
    client.register_schema(subject, Schema(BAD, "AVRO"))
    seen["conflict"] = None
except SchemaRegistryError as e:
    seen["conflict"] = {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}
latest = client.get_latest_version(subject)
seen["latest"] = {"id": latest.schema_id, "version": latest.version, "subject": latest.subject}
seen["versions"] = client.get_versions(subject)
seen["lookup"] = client.lookup_schema(subject, Schema(V1, "AVRO")).version
seen["subjects"] = client.get_subjects()
seen["global_mode"] = client.get_compatibility()
client.set_compatibility(subject_name=subject, level="FULL")
seen["subject_mode"] = client.get_compatibility(subject)
seen["json_id"] = client.register_schema("clicks-value", Schema(CLICK, "JSON"))
seen["json_type"] = fresh.get_schema(seen["json_id"]).schema_type
try:
    client.get_version("nope", 1)
    seen["missing"] = None
except SchemaRegistryError as e:
    seen["missing"] = {"status": e.http_status_code, "code": e.error_code}
seen["deleted"] = client.delete_version(subject, 2)
seen["versions_after_delete"] = client.get_versions(subject)
print(json.dumps(seen))
