#!/usr/bin/env python3
"""Send DICOM files with pynetdicom, each in its own stored transfer syntax.

DCMTK's storescu cannot send JPEG 2000 data as it is (Debian's DCMTK has no JPEG 2000
codec), so the interop tests use pynetdicom for those files.

usage: pynetdicom_store.py HOST PORT CALLING_AE CALLED_AE FILE...
Prints one line per file: "<SOP Instance UID> <status hex>"; exits 1 if any failed.
"""
import sys

from pydicom import dcmread
from pynetdicom import AE


def main() -> int:
    host, port, calling, called, *files = sys.argv[1:]
    datasets = [dcmread(f) for f in files]
    ae = AE(ae_title=calling)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, int(port), ae_title=called)
    if not assoc.is_established:
        print("association failed", file=sys.stderr)
        return 1
    failed = 0
    for ds in datasets:
        status = assoc.send_c_store(ds)
        code = getattr(status, "Status", None)
        print(f"{ds.SOPInstanceUID} {code:04X}" if code is not None else f"{ds.SOPInstanceUID} none")
        failed += code != 0
    assoc.release()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
