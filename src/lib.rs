//! readgate: a teleradiology gateway on the sending hospital's network.
//!
//! The data's path, one module per stage:
//! [`receive`] (C-STORE SCP) → [`spool`] (durable files) → [`store`] (SQLite index) →
//! [`study`] (grouping, stability) → [`decide`] (route / hold) → [`tag`] (accountability
//! tags) → [`forward`] (C-STORE SCU). Beside it: [`intake`] (HL7 over MLLP), [`actions`]
//! (operator actions), [`ledger`] (who read what, where, as what), [`audit`] (the
//! hash-chained trail, ATS-4), [`backup`] (consistent copies taken while serving, and
//! their restore) and [`web`] (REST API and console).
//!
//! At the bottom, importing nothing above them: [`model`] (the domain's enums), [`time`]
//! (the one clock), [`config`] (every section of the configuration), [`i18n`] (the
//! Japanese/English catalogue), [`digest`] and [`tls`]; then the pure parsers [`dicom`]
//! and [`hl7`]. `docs/architecture.md` is the map.

pub mod actions;
pub mod audit;
pub mod backup;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod dbcopy;
pub mod decide;
pub mod demo;
pub mod dicom;
pub mod digest;
pub mod forward;
pub mod hl7;
pub mod i18n;
pub mod intake;
pub mod ledger;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod notify;
#[doc(hidden)]
pub mod pgtest;
pub mod priors;
pub mod receive;
pub mod serve;
pub mod spool;
pub mod store;
pub mod study;
pub mod tag;
pub mod time;
pub mod tls;
pub mod web;
