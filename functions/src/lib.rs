//! Entry points: the Lambda bootstrap (`main.rs`) and the local API stand-in (`local`).

pub mod local;
