#!/usr/bin/env python3
"""Generate the synthetic HL7 v2 sample messages used by the hl7 module's unit tests.

All content is invented: no real patient, physician or facility data.

Segments are separated by CR (0x0D). Each message is written in the character set its
MSH-18 declares: ISO-2022-JP (Python's iso2022_jp codec) for the JAHIS-style OMI^O23,
UTF-8 for the reports, ASCII for the rest.

Run from anywhere:  python3 tests/hl7/make_samples.py
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def seg(name, fields):
    """Build a segment from {field_number: value}; unlisted fields are empty."""
    if not fields:
        return name
    last = max(fields)
    return "|".join([name] + [fields.get(i, "") for i in range(1, last + 1)])


def msh(fields):
    """MSH: MSH-1 is the field separator itself and MSH-2 the encoding characters,
    so MSH-3 is the first value after 'MSH|^~\\&|'."""
    last = max(fields)
    rest = [fields.get(i, "") for i in range(3, last + 1)]
    return "|".join(["MSH", "^~\\&"] + rest)


def comps(*parts):
    return "^".join(parts)


def xcn(id_, family, given, name_type="", representation=""):
    """XCN with XCN.10 name type and XCN.15 name representation code."""
    parts = [id_, family, given] + [""] * 6 + [name_type] + [""] * 4 + [representation]
    return comps(*parts).rstrip("^")


def xpn(family, given, name_type, representation):
    return comps(family, given, "", "", "", "", name_type, representation)


def write(name, segments, encoding, trailing_cr=True):
    text = "\r".join(segments) + ("\r" if trailing_cr else "")
    data = text.encode(encoding)
    (HERE / name).write_bytes(data)
    return data


def omi_o23_iso2022jp():
    segments = [
        msh({3: "HIS", 4: "TOKYO_GEN", 5: "READGATE", 6: "RAD",
             7: "20240601093000+0900", 9: "OMI^O23^OMI_O23", 10: "MSG00001",
             11: "P", 12: "2.5", 15: "AL", 16: "NE", 17: "JPN",
             18: "~ISO IR87", 20: "ISO 2022-1994"}),
        seg("PID", {1: "0001",
                    3: "1234567^^^TOKYO_GEN^PI~99887766^^^&1.2.392.100495.9.99.1&ISO^HC",
                    5: "~".join([xpn("山田", "太郎", "L", "I"),
                                 xpn("ヤマダ", "タロウ", "L", "P"),
                                 xpn("YAMADA", "TARO", "L", "A")]),
                    7: "19650412", 8: "M"}),
        seg("PV1", {1: "0001", 2: "O", 3: "01^^^TOKYO_GEN"}),
        seg("AL1", {1: "1", 2: "DA", 3: "J001^ヨード造影剤^99XYZ", 4: "MO", 5: "じんましん"}),
        seg("ORC", {1: "NW", 2: "ORD-2024-0001^HIS", 5: "SC",
                    9: "20240601093000+0900",
                    12: "~".join([xcn("123456", "佐藤", "花子", "L", "I"),
                                  xcn("123456", "サトウ", "ハナコ", "L", "P")]),
                    14: comps("", "WPN", "PH", "", "81", "3", "12345678", "201")}),
        seg("TQ1", {1: "1", 7: "20240601100000+0900", 9: "S"}),
        seg("OBR", {1: "1", 2: "ORD-2024-0001^HIS",
                    4: "32110011000000000000000000000000^CT 胸部 造影^JJ1017-32",
                    13: "胸痛、労作時息切れ",
                    16: xcn("123456", "佐藤", "花子", "L", "I"),
                    24: "CT",
                    31: "L01^肺塞栓の除外^99LOCAL"}),
        # The escape after kanji is what makes hl7-parser 0.3's decoder panic.
        seg("NTE", {1: "1", 3: "造影剤アレルギー歴あり\\S\\前投薬済み"}),
        seg("DG1", {1: "1", 3: "I26.9^肺塞栓症疑い^ICD10", 6: "W"}),
        seg("OBX", {1: "1", 2: "NM", 3: "8A065000002391901^eGFR^JC10", 5: "45.2",
                    6: "mL/min/1.73m2^^ISO+", 7: ">=60", 8: "L", 11: "F",
                    14: "20240530101500+0900"}),
        seg("OBX", {1: "2", 2: "NM", 3: "3C015000002327101^クレアチニン^JC10", 5: "1.18",
                    6: "mg/dL^^ISO+", 7: "0.65-1.07", 8: "H", 11: "F",
                    14: "20240530101500+0900"}),
        seg("IPC", {1: "ACC-0001", 2: "RP-0001",
                    3: "1.2.392.200036.9116.2.5.1.37.2417525.20240601.1",
                    4: "SPS-0001", 5: "CT^CT^DCM",
                    6: "P001^肺動脈相^99LOCAL~P002^静脈相^99LOCAL", 9: "CT01"}),
    ]
    return write("omi_o23_iso2022jp.hl7", segments, "iso2022_jp")


def orm_segments(accession="ACC-1001", with_zds=True):
    segments = [
        msh({3: "RIS_SENDER", 4: "GENERAL_HOSP", 5: "READGATE", 6: "RAD",
             7: "20240602080000", 9: "ORM^O01", 10: "ORM0001", 11: "P", 12: "2.3.1"}),
        seg("PID", {3: "PAT-1001^^^GENHOSP^MR", 5: "DOE^JANE^Q^^^^L", 7: "19700101", 8: "F"}),
        seg("PV1", {2: "O"}),
        seg("AL1", {1: "1", 2: "DA", 3: "PCN^Penicillin^LOCAL", 4: "MO", 5: "Rash"}),
        seg("ORC", {1: "NW", 2: "PLC-1001^RIS", 3: "FIL-2001^PACS", 5: "SC",
                    7: "1^once^^20240602090000^^R", 9: "20240602080000",
                    12: "9001^SMITH^JOHN^^^DR", 14: "555-0100"}),
        seg("OBR", {1: "1", 2: "PLC-1001^RIS", 3: "FIL-2001^PACS",
                    4: "MRBRAIN^MR Brain without contrast^LOCAL",
                    13: "Headache for 3 weeks \\T\\ nausea",
                    16: "9001^SMITH^JOHN^^^DR", 17: "555-0100",
                    18: accession, 19: "RP-1001", 20: "SPS-1001", 24: "MR",
                    27: "1^once^^20240602090000^^R",
                    31: "^Rule out mass lesion"}),
        seg("NTE", {1: "1", 3: "Patient is claustrophobic"}),
        seg("DG1", {1: "1", 2: "I9", 3: "784.0^Headache^I9", 4: "Headache", 6: "W"}),
        seg("OBX", {1: "1", 2: "NM", 3: "2160-0^Creatinine^LN", 5: "0.9",
                    6: "mg/dL", 11: "F", 14: "20240601070000"}),
    ]
    if with_zds:
        segments.append(seg("ZDS", {1: "1.2.840.99999.1.1001^100^Application^DICOM"}))
    return segments


def orm_o01_ihe():
    return write("orm_o01_ihe.hl7", orm_segments(), "ascii")


def orm_missing_accession():
    segments = orm_segments(accession="", with_zds=False)
    segments[0] = segments[0].replace("ORM0001", "ORM0002")
    return write("orm_missing_accession.hl7", segments, "ascii")


def oru(status, control_id, principal, text_obx, uid_obx):
    segments = [
        msh({3: "REPORTING", 4: "READ_CENTER", 5: "READGATE", 6: "TOKYO_GEN",
             7: "20240601160000+0900", 9: "ORU^R01^ORU_R01", 10: control_id,
             11: "P", 12: "2.5", 18: "UNICODE UTF-8"}),
        seg("PID", {3: "1234567^^^TOKYO_GEN^PI",
                    5: xpn("山田", "太郎", "L", "I"), 7: "19650412", 8: "M"}),
        seg("ORC", {1: "RE", 2: "ORD-2024-0001^HIS", 3: "FIL-0001^READ_CENTER"}),
        seg("OBR", {1: "1", 2: "ORD-2024-0001^HIS", 3: "FIL-0001^READ_CENTER",
                    4: "32110011000000000000000000000000^CT 胸部 造影^JJ1017-32",
                    7: "20240601101500+0900", 18: "ACC-0001",
                    22: "20240601151500+0900" if status == "F" else "20240601123000+0900",
                    25: status, 32: principal,
                    # Trainee / first reader. The preliminary uses the XCN-like
                    # layout some senders put into NDL fields.
                    33: ("2001&田中&次郎^20240601120000+0900^20240601123000+0900"
                         if status == "F" else "2001^田中^次郎")}),
    ]
    n = 0
    if uid_obx:
        n += 1
        segments.append(seg("OBX", {1: str(n), 2: "HD", 3: "113014^Study Instance UID^DCM",
                                    5: "1.2.392.200036.9116.2.5.1.37.2417525.20240601.1",
                                    11: status}))
    for vt, value in text_obx:
        n += 1
        segments.append(seg("OBX", {1: str(n), 2: vt, 3: "59776-5^所見^LN",
                                    5: value, 11: status}))
    return segments


# The two reports on one study: (file, OBR-25 status, MSH-10, OBR-32 principal reader, OBX
# (value type, text) lines, whether an OBX carries the study instance UID).
ORU_REPORTS = [
    ("oru_r01_prelim.hl7", "P", "ORU0001", "", [
        ("TX", "所見：両肺動脈に明らかな造影欠損を認めない。"),
        ("TX", "右下葉に小結節あり\\S\\要経過観察。"),
        ("FT", "印象：肺塞栓症なし。\\.br\\（仮報告）"),
    ], False),
    ("oru_r01_final.hl7", "F", "ORU0002",
     "1001&鈴木&一郎&&&&&&TOKYO_GEN^20240601150000+0900^20240601151500+0900^^^^READ_CENTER", [
         ("TX", "所見：両肺動脈に明らかな造影欠損を認めない。"),
         ("TX", "右下葉S9に4mm大の小結節あり、要経過観察。"),
         ("FT", "印象：肺塞栓症なし。\\.br\\右下葉小結節。"),
     ], True),
]


def oru_r01_reports():
    for name, status, control_id, interpreter, lines, uid_obx in ORU_REPORTS:
        write(name, oru(status, control_id, interpreter, lines, uid_obx=uid_obx), "utf-8")


def adt_a40_merge():
    segments = [
        msh({3: "HIS", 4: "TOKYO_GEN", 5: "READGATE", 6: "RAD",
             7: "20240603100000+0900", 9: "ADT^A40^ADT_A39", 10: "ADT0001",
             11: "P", 12: "2.5"}),
        seg("EVN", {1: "A40", 2: "20240603100000+0900"}),
        seg("PID", {1: "1", 3: "1234567^^^TOKYO_GEN^PI", 5: "YAMADA^TARO^^^^^L",
                    7: "19650412", 8: "M"}),
        seg("MRG", {1: "7654321^^^TOKYO_GEN^PI~X-55^^^OLD_SYSTEM^PI",
                    7: "YAMADA^TAROU^^^^^L"}),
    ]
    return write("adt_a40_merge.hl7", segments, "ascii")


def malformed_no_msh():
    segments = [
        seg("PID", {3: "PAT-1001^^^GENHOSP^MR", 5: "DOE^JANE"}),
        seg("OBR", {1: "1", 18: "ACC-1001"}),
    ]
    return write("malformed_no_msh.hl7", segments, "ascii")


def malformed_truncated():
    # A transmission cut off after two characters of a segment id.
    text = "\r".join(orm_segments()[:5]) + "\rOB"
    data = text.encode("ascii")
    (HERE / "malformed_truncated.hl7").write_bytes(data)
    return data


def main():
    data = omi_o23_iso2022jp()
    # The point of this sample: delimiter bytes occur inside kanji (e.g. 除 = 3D 7C,
    # 剤 = 3A 5E, 時 = 3B 7E), so the raw bytes must not be split before decoding.
    assert b"=|" in data and b":^" in data and b";~" in data
    orm_o01_ihe()
    orm_missing_accession()
    oru_r01_reports()
    adt_a40_merge()
    malformed_no_msh()
    malformed_truncated()


if __name__ == "__main__":
    main()
