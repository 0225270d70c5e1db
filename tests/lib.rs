//! Integration tests: one binary, driving the real `runner` executable.

mod common;

mod apply;
mod docker;
mod faults;
mod graph;
mod preview;
mod properties;
mod schema;
mod validate;
