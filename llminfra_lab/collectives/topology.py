"""Fat-trees: how many hosts a network of k-port switches connects.

Al-Fares, Loukissas and Vahdat (SIGCOMM 2008) build a non-blocking three-level fat-tree
from identical k-port switches: k^3/4 hosts, 5k^2/4 switches. Two levels (leaf-spine)
reach k^2/2 hosts with 3k/2 switches.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["FatTree", "fat_tree"]


@dataclass(frozen=True)
class FatTree:
    """Size of a non-blocking k-ary fat-tree built from identical k-port switches."""
    radix: int
    levels: int
    hosts: int
    switches: int
    links: int          # switch-to-switch cables (host cables excluded)

    @property
    def switches_per_host(self) -> float:
        return self.switches / self.hosts


def fat_tree(radix: int, levels: int = 3) -> FatTree:
    """Hosts and switches of a fat-tree of k-port switches (k = `radix`, even).

    Three levels (Al-Fares et al.): k pods, each with k/2 edge and k/2 aggregation
    switches, plus (k/2)^2 core switches: k^3/4 hosts and 5k^2/4 switches.
    Two levels (leaf-spine): k leaves with k/2 hosts each, k/2 spines: k^2/2 hosts
    and 3k/2 switches.
    """
    if isinstance(radix, bool) or not isinstance(radix, numbers.Integral) or radix < 2 or radix % 2:
        raise ValueError(f"radix must be an even int >= 2, got {radix!r}")
    if levels not in (2, 3):
        raise ValueError(f"levels must be 2 or 3, got {levels!r}")
    k = int(radix)
    if levels == 3:
        hosts, switches = k ** 3 // 4, 5 * k * k // 4
        links = k * (k // 2) * (k // 2) * 2          # edge-agg plus agg-core, per pod
    else:
        hosts, switches = k * k // 2, 3 * k // 2
        links = k * (k // 2)                          # every leaf to every spine
    return FatTree(k, levels, hosts, switches, links)
