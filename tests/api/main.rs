//! Integration tests: every endpoint through a real API Gateway-shaped request, the
//! production handler, the AWS SDK and the emulator (run with infra/test.sh).

mod agent;
mod batch_events;
mod checkpoints;
mod compute_envs;
mod concurrency;
mod connect_idle;
mod costs;
mod data_links;
mod iam;
mod lifecycle;
mod local;
mod lock_contract;
mod members;
mod reconcile;
mod roles;
mod studios;
mod validation;
mod walkthrough;
mod workspaces;
