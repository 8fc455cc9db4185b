#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the project's own
synthetic samples: sample-dicom/ (data sets without their Part 10 header) and
tests/hl7/ (MLLP payloads). Each seed starts with the byte the target reads as its
choice (transfer syntax, encoding, charset). No patient data: the samples are generated.

Run from the repository root: python3 fuzz/make_seeds.py
"""
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"

# Index of each transfer syntax in tag_rewrite's SYNTAXES; encoding index for dataset_walk.
TAG_TS = {
    "1.2.840.10008.1.2": 0,
    "1.2.840.10008.1.2.1": 1,
    "1.2.840.10008.1.2.2": 2,
    "1.2.840.10008.1.2.1.99": 3,
    "1.2.840.10008.1.2.4.50": 4,
}
WALK = {"1.2.840.10008.1.2": 0, "1.2.840.10008.1.2.1": 1, "1.2.840.10008.1.2.2": 2}


def split_part10(raw: bytes):
    """(transfer syntax UID, data set bytes) of a Part 10 file."""
    assert raw[128:132] == b"DICM"
    # (0002,0000) UL group length: tag(4) VR(2) length(2) value(4).
    group_len = struct.unpack_from("<I", raw, 132 + 8)[0]
    meta_end = 132 + 12 + group_len
    pos, ts = 132, None
    while pos < meta_end:
        group, elem = struct.unpack_from("<HH", raw, pos)
        vr = raw[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            length = struct.unpack_from("<I", raw, pos + 8)[0]
            value_at = pos + 12
        else:
            length = struct.unpack_from("<H", raw, pos + 6)[0]
            value_at = pos + 8
        if (group, elem) == (0x0002, 0x0010):
            ts = raw[value_at : value_at + length].rstrip(b"\0 ").decode()
        pos = value_at + length
    return ts, raw[meta_end:]


def write(target: str, name: str, data: bytes):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    for path in sorted((ROOT / "sample-dicom").rglob("*.dcm")):
        ts, dataset = split_part10(path.read_bytes())
        name = f"{path.parent.name}-{path.stem}"
        if ts in TAG_TS:
            write("tag_rewrite", name, bytes([TAG_TS[ts]]) + dataset)
            write("tag_rewrite", name + "-copy", bytes([TAG_TS[ts] | 0x80]) + dataset)
        if ts in WALK:
            write("dataset_walk", name, bytes([WALK[ts]]) + dataset)
    for path in sorted((ROOT / "tests" / "hl7").glob("*.hl7")):
        payload = path.read_bytes()
        for charset in range(4):
            write("hl7_process", f"{path.stem}-{charset}", bytes([charset]) + payload)
        write("mllp_framing", path.stem, b"\x07" + b"\x0b" + payload + b"\x1c\x0d")
    # DICOM text: one value per character set of dicom_text's CHARSETS.
    texts = [
        (0, b"YAMADA^TARO"),
        (1 | 0x80, b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"),
        (2 | 0x80, b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J"),
        (4 | 0x80, b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7"),
        (6, "山田^太郎".encode()),
        (7, "王^小东".encode("gb18030")),
        (8, b"\xd4\xcf\xc0\xde"),
    ]
    for i, (choice, value) in enumerate(texts):
        write("dicom_text", f"value-{i}", bytes([choice]) + value)
    # A C-STORE-RQ command set and a P-DATA-TF PDU carrying it.
    def element(tag_group, tag_elem, value: bytes) -> bytes:
        return struct.pack("<HHI", tag_group, tag_elem, len(value)) + value

    body = (
        element(0, 0x0002, b"1.2.840.10008.5.1.4.1.1.2\0")
        + element(0, 0x0100, struct.pack("<H", 0x0001))
        + element(0, 0x0110, struct.pack("<H", 7))
        + element(0, 0x0700, struct.pack("<H", 0))
        + element(0, 0x0800, struct.pack("<H", 0x0000))
        + element(0, 0x1000, b"1.2.3.4\0")
    )
    command = element(0, 0x0000, struct.pack("<I", len(body))) + body
    write("dimse_command", "c-store-rq", command)
    pdv = struct.pack(">IBB", len(command) + 2, 1, 0x03) + command
    write("dimse_command", "p-data-tf", struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
    write(
        "http_inputs",
        "read-event",
        b'{"reader_id":"R100","study_uid":"1.2.3","action":"opened","at":"2024-06-01T10:00:00+09:00","workstation":"RC1-WS01"}',
    )
    write("http_inputs", "query", b"state=held&limit=10&study=ACC%2D1+x")


if __name__ == "__main__":
    main()
