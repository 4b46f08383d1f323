//! Built-in handlers of shardcron: [`ExecHandler`] (`exec`) and
//! [`HttpHandler`] (`http`).
//!
//! These live apart from the runtime so that the runtime stays free of process
//! management and of an HTTP/TLS stack: an embedding program that registers
//! only its own handlers does not pay for them, while the `shardcron` binary
//! registers both through [`builtin_handlers`]. Each handler comes with a typed
//! argument struct ([`ExecArgs`], [`HttpArgs`]) that the CLI can build and turn
//! into a job's JSON `args` with `to_json`, and that the handler's
//! `validate_args` checks, so a bad job is refused before it is stored.
//!
//! Both handlers make the fire's identity available downstream (environment
//! variables, request headers) so that the command or server can be idempotent
//! on the fire id, and both stop promptly when the fire is cancelled or times
//! out.

#![warn(missing_docs)]

pub mod exec;
pub mod http;

use std::sync::Arc;

use shardcron_runtime::Handler;

pub use exec::{ExecArgs, ExecHandler, EXEC_HANDLER_NAME};
pub use http::{HttpArgs, HttpHandler, StatusRange, HTTP_HANDLER_NAME};

/// The built-in handlers, by name: `("exec", ExecHandler)` and
/// `("http", HttpHandler)`, ready for `HandlerRegistry::insert`.
pub fn builtin_handlers() -> Vec<(&'static str, Arc<dyn Handler>)> {
    vec![
        (
            EXEC_HANDLER_NAME,
            Arc::new(ExecHandler::new()) as Arc<dyn Handler>,
        ),
        (
            HTTP_HANDLER_NAME,
            Arc::new(HttpHandler::new()) as Arc<dyn Handler>,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_named_exec_and_http() {
        let names: Vec<&str> = builtin_handlers().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["exec", "http"]);
    }
}
