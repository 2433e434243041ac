//! Artifacts: long-lived files of one run and job.
