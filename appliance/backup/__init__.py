"""Online backups of the office data folder, restore, and the nightly backup job."""
