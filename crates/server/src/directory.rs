//! The cluster's nodes, kept in the cluster's shared state ([`crate::cluster_state`], kind
//! `node`): a node that digests announces its name, the URL other nodes reach it at, and its
//! roles; every node replays the state at start and follows it. A query then fans out to every
//! digest node the directory knows, beside the configured `peers`, with no list to keep by
//! hand.
//!
//! A node that stops announcing is not dropped: its segments stay on its disk, so a query must
//! keep asking it and say when it does not answer (an incomplete answer, never a silently
//! smaller one). Only `DELETE /api/v1/cluster/nodes/{name}` (an admin's decision that the node
//! and its segments are gone) takes it out. On the embedded bus there is one node and no
//! directory.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use eddy_base::sync::lock;

use crate::cluster_state::{ClusterState, Kind, StateError};
use crate::http::error;
use crate::node::Role;
use crate::AppState;

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

/// The nodes of the cluster, as its shared state says.
#[derive(Debug)]
pub struct Directory {
    state: Arc<ClusterState>,
    /// The name this node announced itself under.
    me: Mutex<Option<String>>,
}

impl Directory {
    /// The directory kept in `state`.
    pub fn new(state: Arc<ClusterState>) -> Directory {
        Directory {
            state,
            me: Mutex::new(None),
        }
    }

    /// Announces this node, unless the directory already says the same of it.
    pub fn announce(&self, node: &str, url: &str, roles: &[Role]) -> Result<(), StateError> {
        *lock(&self.me) = Some(node.to_string());
        let known = self.state.all::<NodeEntry>(Kind::Node).remove(node);
        if known.is_some_and(|k| k.url == url && k.roles == roles) {
            return Ok(());
        }
        let entry = NodeEntry {
            node: node.to_string(),
            url: url.to_string(),
            roles: roles.to_vec(),
            announced_at: eddy_log::now_ns(),
        };
        self.state.put(Kind::Node, node, &entry)
    }

    /// Takes `node` out of the directory; returns whether it was in.
    pub fn forget(&self, node: &str) -> Result<bool, StateError> {
        self.state.remove(Kind::Node, node)
    }

    /// Every node known.
    pub fn nodes(&self) -> Vec<NodeEntry> {
        self.state.all(Kind::Node).into_values().collect()
    }

    /// The URLs of the digest nodes other than this one: where the segments are.
    pub fn digest_urls(&self) -> Vec<String> {
        let me = lock(&self.me).clone();
        self.nodes()
            .into_iter()
            .filter(|n| Some(&n.node) != me.as_ref() && n.roles.contains(&Role::Digest))
            .map(|n| n.url)
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
