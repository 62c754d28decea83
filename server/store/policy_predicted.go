package store

// PolicyPredicted pins the firmware PCRs at approval and checks the boot
// PCRs (4, 11, 12) against predictions computed from the artifacts the
// server serves (server/predict), so image updates need no re-approval.
const PolicyPredicted Policy = "predicted"
