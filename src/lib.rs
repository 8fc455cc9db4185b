pub mod hl7;
