//! complaintflow-models (under construction).
