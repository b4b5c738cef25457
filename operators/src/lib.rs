//! complaintflow-operators (under construction).
