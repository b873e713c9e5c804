//! The local run (`studios-local`, infra/run-local.sh): the API Gateway and Lambda
//! stand-in (`local`), the simulated rest of the stack (`simulate`), sessions as
//! containers (`containers`) and the demo data (`demo`).

pub mod containers;
pub mod demo;
pub mod local;
pub mod simulate;
