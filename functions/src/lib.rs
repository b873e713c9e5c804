//! Entry points: the Lambda bootstrap (`main.rs`), and for the local run the API Gateway
//! stand-in (`local`), the simulated rest of the stack (`simulate`), sessions as
//! containers (`containers`) and the demo data (`demo`).

pub mod containers;
pub mod demo;
pub mod local;
pub mod simulate;
