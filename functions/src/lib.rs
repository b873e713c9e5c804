//! Entry points: the Lambda bootstrap (`main.rs`), and for the local run the API Gateway
//! stand-in (`local`), the simulated rest of the stack (`simulate`) and the demo data
//! (`demo`).

pub mod demo;
pub mod local;
pub mod simulate;
