//! Entry points: the Lambda bootstrap (`main.rs`), and for the local run the API Gateway
//! stand-in (`local`) and the simulated rest of the stack (`simulate`).

pub mod local;
pub mod simulate;
