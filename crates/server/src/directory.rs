//! The cluster's nodes, kept in the bus topic `_nodes` (one partition, kept forever): a node
//! that digests announces its name, the URL other nodes reach it at, and its roles; every node
//! replays the topic at start and follows it. A query then fans out to every digest node the
//! directory knows, beside the configured `peers`, with no list to keep by hand.
//!
//! A node that stops announcing is not dropped: its segments stay on its disk, so a query must
//! keep asking it and say when it does not answer (an incomplete answer, never a silently
//! smaller one). Only `DELETE /api/v1/cluster/nodes/{name}` (an admin's decision that the node
//! and its segments are gone) takes it out. On the embedded bus there is one node and no
//! directory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use eddy_base::sync::{lock, read, write};
use eddy_log::{Bus, PartitionChoice, Record, TopicConfig};

use crate::http::error;
use crate::node::Role;
use crate::AppState;

/// The topic holding the announcements.
pub const TOPIC: &str = "_nodes";

/// A node as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its name (`[cluster] node`).
    pub node: String,
    /// Where other nodes reach it (`[cluster] url`).
    pub url: String,
    /// What it does.
    pub roles: Vec<Role>,
    /// When it last announced itself (ns since the Unix epoch).
    pub announced_at: i64,
}

/// One record of the topic: a node's announcement, or (without a URL) its removal.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Announcement {
    node: String,
    url: Option<String>,
    #[serde(default)]
    roles: Vec<Role>,
    at: i64,
}

/// What went wrong with the directory's topic.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's node directory ({TOPIC}): {0}")]
pub struct DirectoryError(String);

/// The nodes of the cluster, as the bus says.
pub struct Directory {
    bus: Arc<dyn Bus>,
    nodes: RwLock<BTreeMap<String, NodeEntry>>,
    /// The topic's next offset to apply; held while applying, so the follower and a writer
    /// reading back its own record never apply one twice.
    applied: Mutex<u64>,
    /// The name this node announced itself under.
    me: Mutex<Option<String>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Directory({} nodes)", read(&self.nodes).len())
    }
}

fn failed(e: impl ToString) -> DirectoryError {
    DirectoryError(e.to_string())
}

impl Directory {
    /// Opens the directory kept in `bus`, replaying its topic, and follows it on a thread.
    pub fn open(bus: Arc<dyn Bus>) -> Result<Arc<Directory>, DirectoryError> {
        bus.ensure_topic(TOPIC, &TopicConfig::journal())
            .map_err(failed)?;
        let directory = Arc::new(Directory {
            bus,
            nodes: RwLock::new(BTreeMap::new()),
            applied: Mutex::new(0),
            me: Mutex::new(None),
        });
        directory.catch_up()?;
        eddy_log::follow_journal(
            "directory-follow",
            Arc::downgrade(&directory),
            Duration::from_millis(500),
            Directory::catch_up_if_behind,
        );
        Ok(directory)
    }

    /// Applies what the topic holds past what was applied.
    fn catch_up(&self) -> Result<(), DirectoryError> {
        let mut applied = lock(&self.applied);
        let (first, end) = self.bus.offsets(TOPIC, 0).map_err(failed)?;
        let from = (*applied).max(first);
        eddy_log::read_range(&*self.bus, TOPIC, 0, from, end, &mut |r| {
            *applied = r.offset + 1;
            match serde_json::from_slice::<Announcement>(&r.value) {
                Ok(a) => self.apply(a),
                Err(e) => tracing::error!(
                    offset = r.offset,
                    "not a node announcement in {TOPIC}, passed over: {e}"
                ),
            }
            true
        })
        .map_err(failed)
    }

    fn catch_up_if_behind(&self) -> Result<(), DirectoryError> {
        let (_, end) = self.bus.offsets(TOPIC, 0).map_err(failed)?;
        if *lock(&self.applied) < end {
            self.catch_up()?;
        }
        Ok(())
    }

    fn apply(&self, a: Announcement) {
        let mut nodes = write(&self.nodes);
        match a.url {
            Some(url) => {
                let entry = NodeEntry {
                    node: a.node.clone(),
                    url,
                    roles: a.roles,
                    announced_at: a.at,
                };
                nodes.insert(a.node, entry);
            }
            None => {
                nodes.remove(&a.node);
            }
        }
    }

    fn append(&self, a: &Announcement) -> Result<(), DirectoryError> {
        let value = serde_json::to_vec(a).map_err(failed)?;
        let record = Record::new(value).with_key(a.node.clone());
        self.bus
            .produce(TOPIC, vec![record], PartitionChoice::Explicit(0))
            .map_err(failed)?;
        self.catch_up()
    }

    /// Announces this node, unless the directory already says the same of it.
    pub fn announce(&self, node: &str, url: &str, roles: &[Role]) -> Result<(), DirectoryError> {
        *lock(&self.me) = Some(node.to_string());
        let known = read(&self.nodes).get(node).cloned();
        if known.is_some_and(|k| k.url == url && k.roles == roles) {
            return Ok(());
        }
        self.append(&Announcement {
            node: node.to_string(),
            url: Some(url.to_string()),
            roles: roles.to_vec(),
            at: eddy_log::now_ns(),
        })
    }

    /// Takes `node` out of the directory; returns whether it was in.
    pub fn forget(&self, node: &str) -> Result<bool, DirectoryError> {
        if !read(&self.nodes).contains_key(node) {
            return Ok(false);
        }
        self.append(&Announcement {
            node: node.to_string(),
            url: None,
            roles: Vec::new(),
            at: eddy_log::now_ns(),
        })?;
        Ok(true)
    }

    /// Every node known.
    pub fn nodes(&self) -> Vec<NodeEntry> {
        read(&self.nodes).values().cloned().collect()
    }

    /// The URLs of the digest nodes other than this one: where the segments are.
    pub fn digest_urls(&self) -> Vec<String> {
        let me = lock(&self.me).clone();
        read(&self.nodes)
            .values()
            .filter(|n| Some(&n.node) != me.as_ref() && n.roles.contains(&Role::Digest))
            .map(|n| n.url.clone())
            .collect()
    }
}

/// The peers a query on this node fans out to: the configured ones, then the digest nodes the
/// directory knows (other than this one), each once.
pub fn peers(state: &AppState) -> Vec<String> {
    let mut peers: Vec<String> = state.config.cluster.peers.clone();
    if let Some(directory) = &state.directory {
        for url in directory.digest_urls() {
            let same = |p: &String| p.trim_end_matches('/') == url.trim_end_matches('/');
            if !peers.iter().any(same) {
                peers.push(url);
            }
        }
    }
    peers
}

/// `GET /api/v1/cluster/nodes`: the nodes the directory knows.
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    match &state.directory {
        Some(d) => Json(serde_json::json!({ "nodes": d.nodes() })).into_response(),
        None => Json(serde_json::json!({ "nodes": [] })).into_response(),
    }
}

/// `DELETE /api/v1/cluster/nodes/{name}`: takes a node that is gone for good out of the
/// directory, so that queries stop asking it.
pub async fn forget(State(state): State<Arc<AppState>>, Path(node): Path<String>) -> Response {
    let Some(directory) = state.directory.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this node keeps no node directory: its bus is not shared",
        )
        .into_response();
    };
    let forgotten = tokio::task::spawn_blocking(move || directory.forget(&node).map(|f| (f, node)))
        .await
        .map_err(|e| e.to_string());
    match forgotten {
        Ok(Ok((true, node))) => Json(serde_json::json!({ "forgotten": node })).into_response(),
        Ok(Ok((false, node))) => error(
            StatusCode::NOT_FOUND,
            format!("no node {node:?} in the directory"),
        )
        .into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
