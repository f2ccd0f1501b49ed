"""``neurovfm predict``: one study (a DICOM folder, a NIfTI file) or a folder of many in, per study a
``prediction.json`` and a one-page summary out, through the workflow's own ingest, preprocessing, frozen
encoder, probes, report generator and triage code (:mod:`.run`)."""
