//! The router as a list: every route is added through [`Routes`], which keeps the method and
//! path of each, so the routes the server answers can be compared with the access rules
//! ([`crate::access::RULES`]); axum cannot list a router's routes afterwards.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::AppState;

/// A router under construction, with the list of what it routes.
#[derive(Default)]
pub struct Routes {
    router: Router<Arc<AppState>>,
    listed: Vec<(Method, String)>,
}

impl Routes {
    /// `handler` answers `method` on `path` (a `GET` route answers `HEAD` too).
    fn on<H, T>(mut self, method: Method, filter: MethodFilter, path: &str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.listed.push((method, path.to_string()));
        self
    }

    /// `GET path` (and `HEAD`).
    pub fn get<H, T>(self, path: &str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.on(Method::GET, MethodFilter::GET, path, handler)
    }

    /// `POST path`.
    pub fn post<H, T>(self, path: &str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.on(Method::POST, MethodFilter::POST, path, handler)
    }

    /// `PUT path`.
    pub fn put<H, T>(self, path: &str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.on(Method::PUT, MethodFilter::PUT, path, handler)
    }

    /// `DELETE path`.
    pub fn delete<H, T>(self, path: &str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.on(Method::DELETE, MethodFilter::DELETE, path, handler)
    }

    /// `f`'s routes added when `enabled`.
    pub fn when(self, enabled: bool, f: impl FnOnce(Routes) -> Routes) -> Self {
        if enabled {
            f(self)
        } else {
            self
        }
    }

    /// The method and path of every route, in the order they were added.
    pub fn listed(&self) -> &[(Method, String)] {
        &self.listed
    }

    /// The router, and the routes it has that no access rule covers (each is refused by the
    /// guard; the scope-matrix test fails on any).
    pub fn into_router(self) -> (Router<Arc<AppState>>, Vec<String>) {
        let unruled = self
            .listed
            .iter()
            .filter(|(method, path)| crate::access::rule_of(method, path).is_none())
            .map(|(method, path)| format!("{method} {path}"))
            .collect();
        (self.router, unruled)
    }
}
