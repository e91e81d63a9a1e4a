//! spotfit-sim: replays a job trace (the normalized format of `data/traces/`) under the
//! managed-batch baseline (on-demand and spot), spotfit's own sizing and ranking, the Spare
//! Cores resource-tracker rule and the perfectly packed floor, priced with the real catalog.
//! Every modelling assumption is in `docs/simulator.md`.

pub mod engine;
pub mod report;
pub mod svg;
pub mod trace;

pub use engine::{simulate, Policy, PolicyResult, SimConfig};
pub use report::{Report, Targets};
pub use trace::{read_trace, Trace, TraceError};
