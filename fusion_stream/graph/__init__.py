"""Many processes: launch files and the supervisor that runs them. Imports runtime, core, errors."""
