from helpdesk.graphsim.cli import graph_sim

graph_sim(prog_name="python -m helpdesk.graphsim")
