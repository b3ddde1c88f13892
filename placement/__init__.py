"""Placement: where regulation lets each actor run (DESIGN.md section 6).

topology.py  the topology file: Region, jurisdictions, sites, node labels, scenario per jurisdiction
policy.py    the scenarios A/B/C as a pure table: role x jurisdiction x scenario -> where
options.py   Ray options from both: actor names, label selectors, host placement groups, Serve
__main__.py  `python -m placement plan|check`
"""

from placement.options import (actor_name, actor_options, host_placement_group, label_selector,
                               parse_actor_name, serve_options)
from placement.policy import Placement, Role, where
from placement.topology import Scenario, Topology, TopologyError, load_topology

__all__ = ["Placement", "Role", "Scenario", "Topology", "TopologyError", "actor_name", "actor_options",
           "host_placement_group", "label_selector", "load_topology", "parse_actor_name",
           "serve_options", "where"]
