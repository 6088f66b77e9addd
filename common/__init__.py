"""What every program of the project shares and nothing here depends on: the command-line
convention (cli), the code version and portable paths (provenance), SHA-256 (checksums), and a
quiet TensorFlow start (quiet). The bottom floor: it imports nothing of data_prep, reproduce or
bench, and never TensorFlow at load time."""
