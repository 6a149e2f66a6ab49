"""One process: transport, registry, security, clocks, the Node and its runner, parameters,
introspection, process statistics and the numba compile helper. Imports core and errors."""
