//! Integration tests: one binary, driving the real `runner` executable.

mod common;

mod apply;
mod cli;
mod conditions;
mod day_two;
mod docker;
mod faults;
mod files;
mod graph;
mod history;
mod hosts;
mod injection;
mod journal;
mod preflight;
mod preview;
mod properties;
mod recover;
mod release;
mod rollback;
mod schema;
mod secrets;
mod trust;
mod validate;
