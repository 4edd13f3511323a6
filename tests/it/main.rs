//! Integration tests: one binary, one module per area, a shared helper module.
//! Every test starts its own simulated cluster on 127.0.0.1:0.

mod aks;
mod cli;
mod data_policy;
mod deploy;
mod drill;
mod faults;
mod fidelity;
mod fuzz;
mod helm;
mod helpers;
mod image;
mod leader;
mod lifecycle;
mod matrix;
mod object_buckets;
mod preflight;
mod real_cp;
mod realworld;
mod restore;
mod screenshot;
mod serve;
mod sim_api;
mod sim_cloud;
mod sim_kubectl;
mod snapshot;
mod vocabulary;
mod web;
