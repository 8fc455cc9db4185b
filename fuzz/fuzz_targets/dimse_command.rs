//! What an association peer sends first: PDUs as dicom-ul reads them (with readgate's
//! PDU limit), and DIMSE command sets as readgate decodes them, both from the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readgate::dicom::dimse::Command;

fuzz_target!(|data: &[u8]| {
    let _ = Command::decode(data);
    if let Ok(Some(dicom_ul::Pdu::PData { data: values })) =
        dicom_ul::read_pdu(data, 256 * 1024, true)
    {
        for pdv in values {
            let _ = Command::decode(&pdv.data);
        }
    }
});
