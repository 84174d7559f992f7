"""des: a discrete-event simulator of LLM inference on several accelerators.

SimPy processes model each device's compute units and DRAM and every direction of every
link of a networkx topology; an LLMCompass-style mapper gives each kernel its tile
schedule; collectives move piece by piece over the links. Overlap and slowdown come out
of contention for those resources.

The package is built in layers; a module imports only its own layer and the ones below
(``tests/test_layers.py`` checks every import):

1. ``units``, ``errors``, ``names``, ``spans``, ``outputs``, ``progress``, ``lazy`` -
   SI units, the one error type, shared names (sort order, link rows, operator classes,
   span categories), span records, safe file writing, the progress bar, lazy exports;
2. ``specs``, ``fitted`` - frozen, self-checking device, link, collective and system
   descriptions; a device's fitted efficiencies and launches;
3. ``taskgraph``, ``operators``, ``runtime`` - pure data: tasks, operator shapes,
   launch overhead per operator class;
4. ``mapper``, ``area`` - tile schedules (numpy, cached) and die area and cost;
5. ``hardware`` - SimPy compute units, DRAM, links and the network;
6. ``collectives`` - event-simulated ring, hierarchical, tree, NVLS, NVLS-tree and
   peer-memory collectives;
7. ``comm`` - the communication libraries (NCCL, TensorRT-LLM, vLLM) that plan each call;
8. ``faults`` - failures and degradations, and the plan the engine follows;
9. ``engine`` - a task graph run on a system;
10. ``trace``, ``metrics``, ``plot``, ``plot_topology`` - outputs drawn from the spans;
11. ``study``, ``validate``, ``calibrate`` - one point of a study (the only place below
    the command line that imports ``topologies`` and ``workloads``); comparison with
    measurements; fitting a device on its microbenchmarks;
12. ``sweep`` - many points, locally or on Dask;
13. ``cli`` - the ``des`` command.
"""

__version__ = "0.1.0"
