//! readgate: a teleradiology gateway on the sending hospital's network.
//!
//! The data's path, one module per stage:
//! [`receive`] (C-STORE SCP) → [`spool`] (durable files) → [`store`] (SQLite index) →
//! [`study`] (grouping, stability) → [`decide`] (route / hold) → [`forward`] (C-STORE SCU).
//! [`dicom`] holds the DICOM encodings those stages share; [`config`] the configuration;
//! [`audit`] the hash-chained audit trail (ATS-4); [`time`] the one clock and calendar
//! (instants, DICOM and HL7 dates and times, RFC 3339, report months).

pub mod actions;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod decide;
pub mod demo;
pub mod dicom;
pub mod digest;
pub mod forward;
pub mod hl7;
pub mod i18n;
pub mod intake;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod receive;
pub mod serve;
pub mod spool;
pub mod store;
pub mod study;
pub mod tag;
pub mod time;
pub mod tls;
pub mod web;
