//! The end-to-end tests of the `eddy` binary, one module per area. They share one test binary so
//! that CI links it once instead of once per file; each test still starts its own servers on free
//! ports and its own temporary directories, so they run side by side as threads.

mod common;

mod alert_scenarios;
mod alerts;
mod amqp;
mod bench_kafka;
mod bus_blocks;
mod bus_damage;
mod cli;
mod cluster;
mod cluster_state;
mod doors;
mod fanout;
mod full_disk;
mod lag;
mod live;
mod protocol_doors;
mod query_limits;
mod readme;
mod registry;
mod scope_matrix;
mod search;
mod serve;
mod slow_clients;
mod store;
mod stream_on_kafka;
mod tls;
mod ui;
