pub mod dicom_text;
