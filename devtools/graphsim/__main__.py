from devtools.graphsim.cli import graph_sim

graph_sim(prog_name="python -m devtools.graphsim")
