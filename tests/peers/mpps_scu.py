#!/usr/bin/env python3
"""A modality reporting its performed procedure step over MPPS, with pynetdicom.

usage: mpps_scu.py HOST PORT CALLING_AE CALLED_AE STEP...
Each STEP is one message on one association, in order:
  create:MPPS_UID:STUDY_UID[:STATUS]     N-CREATE (status IN PROGRESS unless given;
                                         MPPS_UID "-" lets the SCP name the step)
  set:MPPS_UID:STATUS[:SERIES_UID:SOP_UID,SOP_UID,...]
                                         N-SET, listing those instances (CT images)
Prints one line per message: "<N-CREATE|N-SET> <status hex>".
Synthetic data only.
"""
import sys

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")


def create_dataset(study_uid: str, status: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Synthetic^MPPS"
    ds.PatientID = "SYN-MPPS"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    item = Dataset()
    item.StudyInstanceUID = study_uid
    item.AccessionNumber = "ACC-MPPS"
    item.RequestedProcedureID = "RP1"
    item.ScheduledProcedureStepID = "SPS1"
    item.ScheduledProcedureStepDescription = "CT CHEST"
    item.ReferencedStudySequence = Sequence([])
    item.RequestedProcedureDescription = "CT CHEST"
    ds.ScheduledStepAttributesSequence = Sequence([item])
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT01"
    ds.PerformedProcedureStepStartDate = "20261203"
    ds.PerformedProcedureStepStartTime = "090000"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepDescription = "CT CHEST"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = Sequence([])
    ds.PerformedSeriesSequence = Sequence([])
    return ds


def set_dataset(status: str, series_uid: str | None, sops: list[str]) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261203"
    ds.PerformedProcedureStepEndTime = "091500"
    if series_uid is not None:
        series = Dataset()
        series.PerformingPhysicianName = ""
        series.ProtocolName = "CHEST"
        series.OperatorsName = ""
        series.SeriesInstanceUID = series_uid
        series.SeriesDescription = "AXIAL"
        series.RetrieveAETitle = ""
        images = []
        for sop in sops:
            ref = Dataset()
            ref.ReferencedSOPClassUID = CT_IMAGE
            ref.ReferencedSOPInstanceUID = sop
            images.append(ref)
        series.ReferencedImageSequence = Sequence(images)
        series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([])
        ds.PerformedSeriesSequence = Sequence([series])
    return ds


def main() -> int:
    host, port, calling, called, *steps = sys.argv[1:]
    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    for step in steps:
        parts = step.split(":")
        assoc = ae.associate(host, int(port), ae_title=called)
        if not assoc.is_established:
            print("association failed", file=sys.stderr)
            return 1
        if parts[0] == "create":
            uid = None if parts[1] == "-" else parts[1]
            status = parts[3] if len(parts) > 3 else "IN PROGRESS"
            rsp, _ = assoc.send_n_create(create_dataset(parts[2], status), ModalityPerformedProcedureStep, uid)
            name = "N-CREATE"
        elif parts[0] == "set":
            series = parts[3] if len(parts) > 3 else None
            sops = parts[4].split(",") if len(parts) > 4 and parts[4] else []
            if sops == ["oversize"]:
                # An N-SET far over readgate's default bound on a step's data set (4 MiB).
                sops = [f"{series}.{n}" for n in range(80_000)]
            elif len(sops) == 1 and sops[0].startswith("many="):
                sops = [f"{series}.{n}" for n in range(int(sops[0][5:]))]
            rsp, _ = assoc.send_n_set(set_dataset(parts[2], series, sops), ModalityPerformedProcedureStep, parts[1])
            name = "N-SET"
        else:
            print(f"unknown step {step}", file=sys.stderr)
            return 2
        code = getattr(rsp, "Status", None)
        print(f"{name} {code:04X}" if code is not None else f"{name} none")
        assoc.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
