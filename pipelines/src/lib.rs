//! complaintflow-pipelines (under construction).
