#!/usr/bin/env python3
"""Generate readgate's synthetic DICOM sample set (no real patient data).

Usage:
    python3 sample-dicom/generate.py                      # (re)write the committed samples
    python3 sample-dicom/generate.py --bench-ct N OUTDIR  # N CT instances, 512x512, ~512 KB each
    python3 sample-dicom/generate.py --big-instance SIZE_MB OUTDIR
                                                          # one multi-frame CT of ~SIZE_MB

Everything is deterministic: fixed seeds, fixed dates, and UIDs of the form
2.25.<uuid5 integer> derived from fixed names, so a re-run produces byte-identical
files (given the same pydicom / DCMTK / openjpeg versions).

Needs: pydicom >= 3, numpy, DCMTK (dcmconv, dcmcjpeg, dcmcjpls, dcmcrle; called by
absolute path from $DCMTK_BIN, default /usr/bin -- pynetdicom's own storescu/storescp
scripts shadow DCMTK's on PATH) and, for the JPEG 2000 sample, pylibjpeg +
pylibjpeg-openjpeg (`pip install pylibjpeg pylibjpeg-openjpeg`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

HERE = Path(__file__).resolve().parent
DCMTK_BIN = Path(os.environ.get("DCMTK_BIN", "/usr/bin"))

# ---------------------------------------------------------------------------
# UIDs: 2.25.<128-bit integer> (PS3.5 Annex B.2), from uuid5 of a fixed name.
# ---------------------------------------------------------------------------
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:readgate:sample-dicom")


def uid(name: str) -> UID:
    return UID("2.25." + str(uuid.uuid5(_NAMESPACE, name).int))


IMPLEMENTATION_CLASS_UID = uid("implementation-class")
IMPLEMENTATION_VERSION = "READGATE_SAMPLE"

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")

SYNTHETIC_NOTE = "SYNTHETIC TEST DATA - not a real patient (readgate sample-dicom)"


# ---------------------------------------------------------------------------
# Pixel data: a crude, deterministic chest-like phantom.
# ---------------------------------------------------------------------------
def phantom(rows: int, cols: int, seed: int, z: float = 0.0, max_value: int = 4095) -> np.ndarray:
    """uint16 image: air 0, body ~1064 (water + 40 with intercept -1024), lungs ~200,
    spine ~2000, plus seeded Gaussian noise. Values are clipped to [0, max_value]."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y = (y - rows / 2) / (rows / 2)
    x = (x - cols / 2) / (cols / 2)
    img = np.zeros((rows, cols), np.float32)
    body = (x / 0.85) ** 2 + (y / 0.62) ** 2 <= 1.0
    img[body] = 1064
    shift = 0.05 * np.sin(z)
    for cx in (-0.38, 0.38):
        lung = ((x - cx) / (0.28 + shift)) ** 2 + ((y + 0.05) / 0.42) ** 2 <= 1.0
        img[lung] = 200
    spine = (x ** 2 + (y - 0.42) ** 2) <= 0.09 ** 2
    img[spine] = 2000
    heart = ((x + 0.08) / 0.2) ** 2 + ((y - 0.02) / 0.18) ** 2 <= 1.0
    img[heart] = 1084
    rng = np.random.default_rng(seed)
    img += rng.normal(0.0, 12.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, max_value).astype(np.uint16)


# ---------------------------------------------------------------------------
# Data set builders.
# ---------------------------------------------------------------------------
def file_meta(sop_class: UID, sop_instance: UID, ts: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def base_image(
    *,
    sop_class: UID,
    modality: str,
    study_key: str,
    series_key: str,
    instance_key: str,
    instance_number: int,
    patient_name: str,
    patient_id: str,
    birth_date: str,
    sex: str,
    study_date: str,
    study_time: str,
    accession: str,
    study_description: str,
    series_description: str,
    series_number: int,
    charset: str | list[str] | None = None,
) -> Dataset:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = study_time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(instance_key)
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = study_time
    ds.SeriesTime = study_time
    ds.ContentTime = study_time
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.Manufacturer = "readgate synthetic"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = ""
    ds.StationName = "SYNTH01"
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "generate.py"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.PatientComments = SYNTHETIC_NOTE
    ds.StudyInstanceUID = uid(study_key)
    ds.SeriesInstanceUID = uid(series_key)
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = uid(series_key + "/for")
    ds.PositionReferenceIndicator = ""
    ds.ImageComments = SYNTHETIC_NOTE
    return ds


def add_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int, *, ct_like: bool = True, z: float = 0.0) -> None:
    rows, cols = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["-22.4", "-22.4", f"{z:.1f}"]
    ds.SliceLocation = f"{z:.1f}"
    ds.SliceThickness = "5"
    ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if ct_like and ds.Modality == "CT":
        ds.KVP = "120"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
    ds.PixelData = pixels.tobytes()


def add_clinical_context(
    ds: Dataset,
    *,
    referring: str,
    requesting: str,
    reason: str,
    history: str,
    callback: str,
    requested_procedure_id: str,
    requested_procedure_description: str,
) -> None:
    """The order context readgate needs to let a study go out for reading."""
    ds.ReferringPhysicianName = referring
    ds.AdditionalPatientHistory = history
    ds.RequestingPhysician = requesting
    ds.RequestedProcedureDescription = requested_procedure_description
    item = Dataset()
    item.RequestedProcedureID = requested_procedure_id
    item.ScheduledProcedureStepID = requested_procedure_id + "-1"
    item.ReasonForTheRequestedProcedure = reason
    ds.RequestAttributesSequence = Sequence([item])
    ds.OrderCallbackPhoneNumber = callback


def save(ds: Dataset, path: Path, ts: UID) -> None:
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def dcmtk(tool: str, *args: str) -> None:
    exe = DCMTK_BIN / tool
    if not exe.exists():
        sys.exit(f"generate.py: DCMTK tool {exe} not found (apt-get install dcmtk, or set DCMTK_BIN)")
    subprocess.run([str(exe), *args], check=True)


# ---------------------------------------------------------------------------
# The committed sample set.
# ---------------------------------------------------------------------------
def chest_ct(key: str, i: int, study_date: str, study_time: str, accession: str) -> Dataset:
    """Instance i + 1 of a chest CT of Test^Taro (SYN-0001), UIDs named after `key`."""
    return base_image(
        sop_class=CT_IMAGE_STORAGE, modality="CT",
        study_key=f"{key}/study", series_key=f"{key}/series/2",
        instance_key=f"{key}/instance/{i + 1}", instance_number=i + 1,
        patient_name="Test^Taro", patient_id="SYN-0001", birth_date="19700101", sex="M",
        study_date=study_date, study_time=study_time, accession=accession,
        study_description="CT CHEST W/O CONTRAST", series_description="Axial 5mm",
        series_number=2,
    )


def gen_ct_chest(out: Path) -> None:
    for i in range(3):
        ds = chest_ct("ct-chest", i, "20250401", "093000", "SYNACC0001")
        add_clinical_context(
            ds,
            referring="Referrer^Fake^^Dr",
            requesting="Requester^Fake^^Dr",
            reason="Persistent cough, rule out pneumonia",
            history="Synthetic history: smoker 20 pack-years, cough for 3 weeks",
            callback="000-0000-0001",
            requested_procedure_id="SYNRP0001",
            requested_procedure_description="CT chest without contrast",
        )
        z = -10.0 + 5.0 * i
        add_pixels(ds, phantom(64, 64, seed=100 + i, z=z), 12, z=z)
        save(ds, out / f"IM{i + 1:04d}.dcm", ExplicitVRLittleEndian)


def gen_prior_ct(out: Path) -> None:
    """The ct-chest patient's earlier chest CT: the prior the demo's PACS holds."""
    for i in range(2):
        ds = chest_ct("prior-ct", i, "20241001", "101500", "SYNACC0000")
        z = -5.0 + 5.0 * i
        add_pixels(ds, phantom(64, 64, seed=200 + i, z=z), 12, z=z)
        save(ds, out / f"IM{i + 1:04d}.dcm", ExplicitVRLittleEndian)


def gen_mr_head(out: Path) -> None:
    """No exam purpose, no clinical history: the 'held for missing context' sample."""
    for i in range(2):
        ds = base_image(
            sop_class=MR_IMAGE_STORAGE, modality="MR",
            study_key="mr-head/study", series_key="mr-head/series/3",
            instance_key=f"mr-head/instance/{i + 1}", instance_number=i + 1,
            patient_name="Sample^Hanako", patient_id="SYN-0002", birth_date="19851231", sex="F",
            study_date="20250402", study_time="141500", accession="SYNACC0002",
            study_description="MR HEAD", series_description="T2 axial",
            series_number=3,
        )
        ds.ReferringPhysicianName = "Referrer^Fake^^Dr"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTime = "90"
        ds.RepetitionTime = "4000"
        ds.EchoTrainLength = "16"
        ds.MagneticFieldStrength = "1.5"
        z = 20.0 + 5.0 * i
        add_pixels(ds, phantom(64, 64, seed=200 + i, z=z), 12, z=z)
        save(ds, out / f"IM{i + 1:04d}.dcm", ImplicitVRLittleEndian)


def gen_ct_abdomen(out: Path) -> None:
    """A CT with no order behind it: no exam purpose, no clinical information, no
    requesting physician, no callback number. `readgate demo` keeps it held until it is
    released by hand in the console."""
    ds = base_image(
        sop_class=CT_IMAGE_STORAGE, modality="CT",
        study_key="ct-abdomen/study", series_key="ct-abdomen/series/2",
        instance_key="ct-abdomen/instance/1", instance_number=1,
        patient_name="Sample^Jiro", patient_id="SYN-0006", birth_date="19600315", sex="M",
        study_date="20250403", study_time="221000", accession="SYNACC0006",
        study_description="CT ABDOMEN", series_description="Axial 5mm",
        series_number=2,
    )
    ds.ReferringPhysicianName = "Referrer^Fake^^Dr"
    add_pixels(ds, phantom(64, 64, seed=600, z=0.0), 12, z=0.0)
    save(ds, out / "IM0001.dcm", ExplicitVRLittleEndian)


JA_PATIENT_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
JA_REFERRING = "Sato^Hanako=佐藤^花子=さとう^はなこ"
JA_HISTORY = "胸痛あり、精査希望"
JA_REASON = "胸痛の精査"
JA_STUDY_DESCRIPTION = "胸部CT 単純"


def gen_japanese(out: Path, key: str, charset, patient_id: str, accession: str) -> None:
    ds = base_image(
        sop_class=CT_IMAGE_STORAGE, modality="CT",
        study_key=f"{key}/study", series_key=f"{key}/series/1",
        instance_key=f"{key}/instance/1", instance_number=1,
        patient_name=JA_PATIENT_NAME, patient_id=patient_id, birth_date="19600505", sex="M",
        study_date="20250403", study_time="101010", accession=accession,
        study_description=JA_STUDY_DESCRIPTION, series_description="Axial 5mm",
        series_number=1, charset=charset,
    )
    add_clinical_context(
        ds,
        referring=JA_REFERRING,
        requesting=JA_REFERRING,
        reason=JA_REASON,
        history=JA_HISTORY,
        callback="000-0000-0003",
        requested_procedure_id=f"SYNRP{patient_id[-4:]}",
        requested_procedure_description="胸部CT",
    )
    add_pixels(ds, phantom(64, 64, seed=300 + len(key)), 12)
    save(ds, out / "IM0001.dcm", ExplicitVRLittleEndian)


def gen_transfer_syntaxes(out: Path) -> list[tuple[str, UID]]:
    """One small CT instance per transfer syntax, all in one study (one series each)."""
    made: list[tuple[str, UID]] = []
    items = [
        # name, transfer syntax, bits (8 or 12)
        ("explicit-le", ExplicitVRLittleEndian, 12),
        ("implicit-le", ImplicitVRLittleEndian, 12),
        ("explicit-be", ExplicitVRBigEndian, 12),
        ("deflated-le", DeflatedExplicitVRLittleEndian, 12),
        ("jpeg-baseline", JPEGBaseline8Bit, 8),
        ("jpeg-extended", JPEGExtended12Bit, 12),
        ("jpeg-lossless-sv1", JPEGLosslessSV1, 12),
        ("jpegls-lossless", JPEGLSLossless, 12),
        ("rle-lossless", RLELossless, 12),
        ("j2k-lossless", JPEG2000Lossless, 12),
    ]
    with tempfile.TemporaryDirectory(prefix="readgate-sample-") as tmp:
        tmpdir = Path(tmp)
        for n, (name, ts, bits) in enumerate(items, start=1):
            ds = base_image(
                sop_class=CT_IMAGE_STORAGE, modality="CT",
                study_key="transfer-syntaxes/study", series_key=f"transfer-syntaxes/series/{name}",
                instance_key=f"transfer-syntaxes/instance/{name}", instance_number=1,
                patient_name="Syntax^Test", patient_id="SYN-0005", birth_date="19900101", sex="O",
                study_date="20250405", study_time="120000", accession="SYNACC0005",
                study_description="TRANSFER SYNTAX SAMPLES", series_description=f"TS {name}",
                series_number=n,
            )
            add_clinical_context(
                ds,
                referring="Referrer^Fake^^Dr", requesting="Requester^Fake^^Dr",
                reason="Transfer syntax coverage test", history="Synthetic history: none",
                callback="000-0000-0005", requested_procedure_id="SYNRP0005",
                requested_procedure_description="CT transfer syntax samples",
            )
            if bits == 8:
                px = (phantom(64, 64, seed=500 + n) >> 4).astype(np.uint8)
                add_pixels(ds, px, 8)
                # 8-bit stored values: show them as-is, not as HU.
                for kw in ("RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth"):
                    delattr(ds, kw)
            else:
                add_pixels(ds, phantom(64, 64, seed=500 + n), 12)
            dst = out / f"{name}.dcm"
            src = tmpdir / f"{name}-src.dcm"
            if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
                save(ds, dst, ts)
            elif ts == JPEG2000Lossless:
                ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian)
                ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
                save(ds, dst, ts)
            else:
                save(ds, src, ExplicitVRLittleEndian)
                if ts == ExplicitVRBigEndian:
                    dcmtk("dcmconv", "+tb", str(src), str(dst))
                elif ts == DeflatedExplicitVRLittleEndian:
                    dcmtk("dcmconv", "+td", str(src), str(dst))
                elif ts == JPEGBaseline8Bit:
                    dcmtk("dcmcjpeg", "+eb", "+un", str(src), str(dst))
                elif ts == JPEGExtended12Bit:
                    dcmtk("dcmcjpeg", "+ee", "+un", str(src), str(dst))
                elif ts == JPEGLosslessSV1:
                    dcmtk("dcmcjpeg", "+e1", "+un", str(src), str(dst))
                elif ts == JPEGLSLossless:
                    dcmtk("dcmcjpls", "+el", "+un", str(src), str(dst))
                elif ts == RLELossless:
                    dcmtk("dcmcrle", "+un", str(src), str(dst))
                else:  # pragma: no cover
                    raise AssertionError(ts)
            made.append((name, ts))
    return made


def verify(root: Path, ts_made: list[tuple[str, UID]]) -> None:
    """Re-read everything; check transfer syntaxes, UIDs and the Japanese text round-trip."""
    problems: list[str] = []
    for name, ts in ts_made:
        f = root / "transfer-syntaxes" / f"{name}.dcm"
        got = pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if got != ts:
            problems.append(f"{f}: transfer syntax {got}, expected {ts}")
        if got != DeflatedExplicitVRLittleEndian:
            ds = pydicom.dcmread(f)
            if ds.SOPInstanceUID != uid(f"transfer-syntaxes/instance/{name}"):
                problems.append(f"{f}: SOP Instance UID changed to {ds.SOPInstanceUID}")
    for sub in ("ja-iso2022", "ja-utf8"):
        ds = pydicom.dcmread(root / sub / "IM0001.dcm")
        for kw, want in (
            ("PatientName", JA_PATIENT_NAME),
            ("ReferringPhysicianName", JA_REFERRING),
            ("AdditionalPatientHistory", JA_HISTORY),
            ("StudyDescription", JA_STUDY_DESCRIPTION),
        ):
            if str(ds.data_element(kw).value) != want:
                problems.append(f"{sub}: {kw} reads back as {ds.data_element(kw).value!r}")
        if ds.RequestAttributesSequence[0].ReasonForTheRequestedProcedure != JA_REASON:
            problems.append(f"{sub}: reason reads back wrong")
    # PS3.5 Annex H.3.1: the exact bytes of the ISO 2022 IR 87 person name.
    raw = pydicom.dcmread(root / "ja-iso2022" / "IM0001.dcm")
    raw_pn = raw.data_element("PatientName")
    expected = (
        b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B="
        b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
    )
    got_bytes = raw_pn.value.original_string
    if got_bytes != expected:
        problems.append(f"ja-iso2022: PatientName bytes {got_bytes!r} != PS3.5 H.3.1 {expected!r}")
    for f in sorted(root.glob("*/*.dcm")):
        r = subprocess.run([str(DCMTK_BIN / "dcmdump"), "-q", str(f)], capture_output=True, text=True)
        if r.returncode != 0 or "E:" in r.stderr:
            problems.append(f"{f}: dcmdump failed: {r.stderr.strip()}")
    if problems:
        sys.exit("generate.py: verification failed:\n  " + "\n  ".join(problems))


def gen_samples(root: Path) -> None:
    subdirs = ("ct-chest", "prior-ct", "mr-head", "ct-abdomen", "ja-iso2022", "ja-utf8",
               "transfer-syntaxes")
    for sub in subdirs:
        d = root / sub
        if d.exists():
            for f in d.glob("*.dcm"):
                f.unlink()
        d.mkdir(parents=True, exist_ok=True)
    gen_ct_chest(root / "ct-chest")
    gen_prior_ct(root / "prior-ct")
    gen_mr_head(root / "mr-head")
    gen_ct_abdomen(root / "ct-abdomen")
    gen_japanese(root / "ja-iso2022", "ja-iso2022", ["", "ISO 2022 IR 87"], "SYN-0003", "SYNACC0003")
    gen_japanese(root / "ja-utf8", "ja-utf8", "ISO_IR 192", "SYN-0004", "SYNACC0004")
    made = gen_transfer_syntaxes(root / "transfer-syntaxes")
    verify(root, made)
    total = sum(f.stat().st_size for f in root.glob("*/*.dcm"))
    count = len(list(root.glob("*/*.dcm")))
    print(f"generate.py: wrote {count} files, {total} bytes, under {root}")


# ---------------------------------------------------------------------------
# Benchmark data (not committed).
# ---------------------------------------------------------------------------
def bench_header(i: int, *, sop_class: UID, study_key: str, series_key: str, instance_key: str,
                 description: str) -> Dataset:
    ds = base_image(
        sop_class=sop_class, modality="CT",
        study_key=study_key, series_key=series_key,
        instance_key=instance_key, instance_number=i + 1,
        patient_name="Bench^Patient", patient_id="SYN-BENCH", birth_date="19750101", sex="O",
        study_date="20250410", study_time="080000", accession="SYNBENCH01",
        study_description=description, series_description="Axial 1.25mm",
        series_number=1,
    )
    add_clinical_context(
        ds,
        referring="Referrer^Fake^^Dr", requesting="Requester^Fake^^Dr",
        reason="Benchmark: chest pain work-up", history="Synthetic history for the relay benchmark",
        callback="000-0000-0009", requested_procedure_id="SYNRPBENCH",
        requested_procedure_description="CT chest benchmark",
    )
    return ds


def gen_bench_ct(n: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # A few distinct base slices; each instance writes its index into its first 4 pixels
    # so that no two pixel blocks are identical.
    bases = [phantom(512, 512, seed=900 + k, z=float(k)) for k in range(8)]
    for i in range(n):
        ds = bench_header(
            i, sop_class=CT_IMAGE_STORAGE, study_key="bench-ct/study", series_key="bench-ct/series/1",
            instance_key=f"bench-ct/instance/{i + 1}", description="CT CHEST BENCHMARK",
        )
        px = bases[i % len(bases)].copy()
        px[0, :4] = np.frombuffer(np.uint64(i).tobytes(), dtype=np.uint16)  # unique per instance
        z = -200.0 + 1.25 * i
        add_pixels(ds, px, 12, z=z)
        save(ds, out / f"CT{i + 1:06d}.dcm", ExplicitVRLittleEndian)
    print(f"generate.py: wrote {n} bench CT instances to {out}")


def gen_big_instance(size_mb: int, out: Path) -> Path:
    """One Enhanced CT instance of ~size_mb MiB, written frame by frame: the header with
    pydicom, then the (7FE0,0010) OW element header and the frames appended by hand, so
    memory stays at a few MB whatever the size."""
    rows = cols = 512
    frame_bytes = rows * cols * 2
    frames = max(1, (size_mb * 1024 * 1024 + frame_bytes - 1) // frame_bytes)
    length = frames * frame_bytes
    if length > 0xFFFFFFFE:
        sys.exit(f"generate.py: {size_mb} MB does not fit one pixel data element (max ~4095 MB)")
    out.mkdir(parents=True, exist_ok=True)
    ds = bench_header(
        0, sop_class=ENHANCED_CT_IMAGE_STORAGE, study_key=f"big/{size_mb}/study",
        series_key=f"big/{size_mb}/series/1", instance_key=f"big/{size_mb}/instance/1",
        description=f"CT BIG INSTANCE {size_mb} MB",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    for kw in ("SliceLocation",):
        if kw in ds:
            delattr(ds, kw)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.NumberOfFrames = frames
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.ContentQualification = "RESEARCH"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionNumber = 1
    pm = Dataset()
    pm.PixelSpacing = ["0.7", "0.7"]
    pm.SliceThickness = "0.5"
    po = Dataset()
    po.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    pvt = Dataset()
    pvt.RescaleIntercept = "-1024"
    pvt.RescaleSlope = "1"
    pvt.RescaleType = "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for f in range(frames):
        pp = Dataset()
        pp.ImagePositionPatient = ["-179.2", "-179.2", f"{-500 + 0.5 * f:.1f}"]
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = f + 1
        item = Dataset()
        item.PlanePositionSequence = Sequence([pp])
        item.FrameContentSequence = Sequence([fc])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    path = out / f"BIG{size_mb}MB.dcm"
    # Header (everything below (7FE0,0010)) with pydicom ...
    save(ds, path, ExplicitVRLittleEndian)
    # ... then the Pixel Data element by hand: tag, VR "OW", 2 reserved bytes, 32-bit length.
    bases = [phantom(rows, cols, seed=1000 + k, z=float(k)).tobytes() for k in range(4)]
    with open(path, "ab") as fh:
        fh.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        for f in range(frames):
            fh.write(bases[f % len(bases)])
    print(f"generate.py: wrote {path} ({path.stat().st_size} bytes, {frames} frames)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-ct", nargs=2, metavar=("N", "OUTDIR"),
                    help="write N synthetic 512x512 CT instances (one series) into OUTDIR")
    ap.add_argument("--big-instance", nargs=2, metavar=("SIZE_MB", "OUTDIR"),
                    help="write one multi-frame CT instance of about SIZE_MB MiB into OUTDIR")
    ap.add_argument("--out", default=str(HERE), help="root of the sample set (default: this folder)")
    a = ap.parse_args()
    if a.bench_ct:
        gen_bench_ct(int(a.bench_ct[0]), Path(a.bench_ct[1]))
    elif a.big_instance:
        gen_big_instance(int(a.big_instance[0]), Path(a.big_instance[1]))
    else:
        gen_samples(Path(a.out))


if __name__ == "__main__":
    main()
