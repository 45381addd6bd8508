//! The browser's entry point (feature `wasm`): [`WasmSession`], a `wasm-bindgen` class over
//! [`crate::web::WebSession`].
//!
//! Built by `infra/web-build.sh` for `wasm32-unknown-unknown` and bound with
//! `wasm-bindgen --target web`; the web console imports it from `shared/web/src/wasm/`. Every
//! value crosses the boundary as a JSON string or a plain number, so the generated bindings
//! stay small and the console parses with `JSON.parse` against `shared/web/src/core-types.ts`.
//! Errors are thrown as JavaScript `Error`s carrying the Rust error and its causes on one line.
//!
//! # Why native tests suffice
//! This shell holds no logic: each method converts JavaScript numbers (`web::millis`,
//! `web::seed_of`), forwards its strings to the same-named method of `WebSession`, and turns a
//! `WebError` into a `JsError` with `web::error_message`. Everything that decides something
//! (the protocol core, the 5e rules, the verifier, the JSON shapes, the ViewModel, the
//! summaries) lives in modules compiled unchanged for both targets and covered natively by
//! `cargo test -p dlab-client` (the scripted session of `web`'s tests, the core's scenario and
//! property tests). A wasm-side test would exercise the `wasm-bindgen` glue, which is generated
//! code; the build (`cargo clippy --target wasm32-unknown-unknown` and `web-build.sh`) checks
//! that it compiles and binds.

use wasm_bindgen::prelude::*;

use crate::web::{self, WebError, WebSession};

fn thrown(error: WebError) -> JsError {
    JsError::new(&web::error_message(&error))
}

/// One session of the client core, driven by the page: it owns the WebSocket, the HTTP loads
/// and the timers, feeds every frame and `Date.now()` in, and executes the outputs returned.
#[wasm_bindgen]
pub struct WasmSession {
    inner: WebSession,
}

#[wasm_bindgen]
impl WasmSession {
    /// A session client for `sessionId` as `userId`. `seedHi`/`seedLo`: two 32-bit words from
    /// `crypto.getRandomValues` (event ids and local dice are drawn from them).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = sessionId)] session_id: &str,
        #[wasm_bindgen(js_name = userId)] user_id: &str,
        #[wasm_bindgen(js_name = seedHi)] seed_hi: u32,
        #[wasm_bindgen(js_name = seedLo)] seed_lo: u32,
    ) -> WasmSession {
        WasmSession {
            inner: WebSession::new(session_id, user_id, web::seed_of(seed_hi, seed_lo)),
        }
    }

    /// The body of `GET /sessions/{id}`, before `start()`.
    #[wasm_bindgen(js_name = loadState)]
    pub fn load_state(
        &mut self,
        #[wasm_bindgen(js_name = stateJson)] state_json: &str,
    ) -> Result<(), JsError> {
        self.inner.load_state(state_json).map_err(thrown)
    }

    /// Starts connecting: `Output[]` as JSON.
    pub fn start(&mut self, now: f64) -> String {
        self.inner.start(web::millis(now))
    }

    /// Stops for good: `Output[]` as JSON.
    pub fn stop(&mut self, now: f64) -> String {
        self.inner.stop(web::millis(now))
    }

    /// The socket opened: `Output[]` as JSON.
    #[wasm_bindgen(js_name = onConnected)]
    pub fn on_connected(&mut self, now: f64) -> String {
        self.inner.on_connected(web::millis(now))
    }

    /// The socket closed or failed to open: `Output[]` as JSON.
    #[wasm_bindgen(js_name = onDisconnected)]
    pub fn on_disconnected(&mut self, now: f64) -> String {
        self.inner.on_disconnected(web::millis(now))
    }

    /// A text frame from the socket: `Output[]` as JSON.
    #[wasm_bindgen(js_name = onText)]
    pub fn on_text(&mut self, text: &str, now: f64) -> String {
        self.inner.on_text(text, web::millis(now))
    }

    /// The body answering an `{kind: "http"}` output: `Output[]` as JSON; throws on a bad body.
    #[wasm_bindgen(js_name = onLoaded)]
    pub fn on_loaded(&mut self, body: &str, now: f64) -> Result<String, JsError> {
        self.inner.on_loaded(body, web::millis(now)).map_err(thrown)
    }

    /// Time passed: `Output[]` as JSON.
    pub fn tick(&mut self, now: f64) -> String {
        self.inner.tick(web::millis(now))
    }

    /// When `tick` has work next (ms), or `undefined`.
    #[wasm_bindgen(js_name = nextWake)]
    pub fn next_wake(&self) -> Option<f64> {
        // Millisecond timestamps are far below 2^53: exact as a JavaScript number.
        self.inner.next_wake().map(|at| at as f64)
    }

    /// Queues an event: `{id, outputs}` as JSON; throws when refused locally.
    pub fn submit(
        &mut self,
        #[wasm_bindgen(js_name = eventType)] event_type: &str,
        #[wasm_bindgen(js_name = payloadJson)] payload_json: &str,
        now: f64,
    ) -> Result<String, JsError> {
        self.inner
            .submit(event_type, payload_json, web::millis(now))
            .map_err(thrown)
    }

    /// Builds a 5e command and queues it: `{id, outputs}` as JSON; throws when refused.
    pub fn command(
        &mut self,
        name: &str,
        #[wasm_bindgen(js_name = argsJson)] args_json: &str,
        now: f64,
    ) -> Result<String, JsError> {
        self.inner
            .command(name, args_json, web::millis(now))
            .map_err(thrown)
    }

    /// The attack's formulas (`AttackPlan` JSON) before any die is rolled; throws when the
    /// attack is impossible.
    #[wasm_bindgen(js_name = planAttack)]
    pub fn plan_attack(
        &self,
        attacker: &str,
        target: &str,
        weapon: Option<String>,
    ) -> Result<String, JsError> {
        self.inner
            .plan_attack(attacker, target, weapon.as_deref())
            .map_err(thrown)
    }

    /// The ViewModel as JSON.
    pub fn snapshot(&self) -> String {
        self.inner.snapshot()
    }
}
