#!/usr/bin/env python3
"""Write a small synthetic CT study for the policy scenario tests (no real patient data).

usage: make_study.py OUTDIR --study-uid UID [options]

Writes COUNT explicit VR little endian CT Image Storage instances (8x8, 16-bit) of one
study and one series into OUTDIR (IM0001.dcm, ...). Every clinical-context attribute is
written only when its option is given, so a test states exactly what the modality sends:

  --purpose TEXT      Reason for the Requested Procedure (0040,1002), inside the Request
                      Attributes Sequence (0040,0275) as modalities send it (exam purpose)
  --history TEXT      Additional Patient History (0010,21B0) (clinical information)
  --requesting PN     Requesting Physician (0032,1032)
  --callback TEXT     Order Callback Phone Number (0040,2010)
  --contrast TEXT     Contrast/Bolus Agent (0018,0010): a contrast study
  --study-time TM     Study Time (0008,0030); "" writes it empty (Type 2)
  --report TEXT       also a Basic Text SR (series <uid>.2, SOP <uid>.2.1) whose finding
                      is TEXT: the study's report, as a PACS keeps it
  --dose-report       also an X-Ray Radiation Dose SR (series <uid>.3): SR, but no report

Text is written with Specific Character Set ISO_IR 192 (UTF-8), so Japanese works.
Prints the SOP Instance UIDs, one per line. SOP Instance UIDs are <study uid>.1.<n>.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
SYNTHETIC_NOTE = "SYNTHETIC TEST DATA - not a real patient (readgate policy scenarios)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--study-uid", required=True)
    p.add_argument("--count", type=int, default=2)
    p.add_argument("--patient-id", default="SYN-SCEN-0001")
    p.add_argument("--patient-name", default="Scenario^Synthetic")
    p.add_argument("--issuer", help="Issuer of Patient ID (0010,0021)")
    p.add_argument("--accession", default="")
    p.add_argument("--study-date", default="20240601")
    p.add_argument("--study-time", default="093000")
    p.add_argument("--modality", default="CT")
    p.add_argument("--body-part", help="Body Part Examined (0018,0015) of the image series")
    p.add_argument("--purpose")
    p.add_argument("--history")
    p.add_argument("--requesting")
    p.add_argument("--callback")
    p.add_argument("--contrast")
    p.add_argument("--report")
    p.add_argument("--dose-report", action="store_true")
    args = p.parse_args()

    args.outdir.mkdir(parents=True, exist_ok=True)
    study_uid = UID(args.study_uid)
    series_uid = UID(f"{args.study_uid}.1")
    for n in range(1, args.count + 1):
        sop_uid = UID(f"{args.study_uid}.1.{n}")
        ds = common_attributes(args, CT_IMAGE_STORAGE, sop_uid, args.modality)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesDate = args.study_date
        ds.PatientComments = SYNTHETIC_NOTE
        if args.history is not None:
            ds.AdditionalPatientHistory = args.history
        if args.body_part is not None:
            ds.BodyPartExamined = args.body_part
        if args.contrast is not None:
            ds.ContrastBolusAgent = args.contrast
        if args.requesting is not None:
            ds.RequestingPhysician = args.requesting
        if args.purpose is not None:
            item = Dataset()
            item.RequestedProcedureID = f"RP-{args.accession or 'NONE'}"
            item.ScheduledProcedureStepID = f"SPS-{args.accession or 'NONE'}"
            item.ReasonForTheRequestedProcedure = args.purpose
            ds.RequestAttributesSequence = Sequence([item])
        if args.callback is not None:
            ds.OrderCallbackPhoneNumber = args.callback
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = n
        ds.ImageComments = SYNTHETIC_NOTE
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 8
        ds.Columns = 8
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.PixelData = bytes((i * 7 + n) % 251 for i in range(8 * 8 * 2))

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(args.outdir / f"IM{n:04d}.dcm", enforce_file_format=True)
        print(sop_uid)
    if args.report is not None:
        write_sr(args, BASIC_TEXT_SR, 2, args.report)
    if args.dose_report:
        write_sr(args, XRAY_DOSE_SR, 3, "CT dose")
    return 0


BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
XRAY_DOSE_SR = UID("1.2.840.10008.5.1.4.1.1.88.67")


def common_attributes(args, sop_class: UID, sop_uid: UID, modality: str) -> Dataset:
    """What every instance of the study carries: SOP, patient and study attributes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = args.study_date
    ds.StudyTime = args.study_time
    ds.AccessionNumber = args.accession
    ds.Modality = modality
    ds.Manufacturer = "readgate synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC CT"
    ds.PatientName = args.patient_name
    ds.PatientID = args.patient_id
    if args.issuer:
        ds.IssuerOfPatientID = args.issuer
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    return ds


def write_sr(args, sop_class: UID, series: int, text: str) -> None:
    """One SR instance in its own series: a container with one TEXT finding."""
    sop_uid = UID(f"{args.study_uid}.{series}.1")
    ds = common_attributes(args, sop_class, sop_uid, "SR")
    ds.ContentDate = args.study_date
    ds.ContentTime = args.study_time
    ds.StudyInstanceUID = UID(args.study_uid)
    ds.SeriesInstanceUID = UID(f"{args.study_uid}.{series}")
    ds.StudyID = "1"
    ds.SeriesNumber = series
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    title = Dataset()
    title.CodeValue = "18748-4"
    title.CodingSchemeDesignator = "LN"
    title.CodeMeaning = "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = Sequence([title])
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    name = Dataset()
    name.CodeValue = "121071"
    name.CodingSchemeDesignator = "DCM"
    name.CodeMeaning = "Finding"
    finding.ConceptNameCodeSequence = Sequence([name])
    finding.TextValue = text
    ds.ContentSequence = Sequence([finding])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(args.outdir / f"SR{series:04d}.dcm", enforce_file_format=True)


if __name__ == "__main__":
    raise SystemExit(main())
