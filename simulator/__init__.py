"""A deterministic simulated fleet of orbital GPU racks producing the contract's Kafka messages.

>>> messages, truth = generate(SimulationConfig(duration_s=60, contact="continuous"))
>>> n = sum(1 for _ in messages)
>>> n == truth.messages_sent
True
"""

from simulator.codec import ContractCodec, default_contract_dir
from simulator.config import GROUND_STATIONS, FaultSpec, SimulationConfig, rack_id, satellite_id
from simulator.messages import SimMessage, Simulation, generate
from simulator.truth import GroundTruth, SeqRange

__all__ = [
    "GROUND_STATIONS",
    "ContractCodec",
    "FaultSpec",
    "GroundTruth",
    "SeqRange",
    "SimMessage",
    "Simulation",
    "SimulationConfig",
    "default_contract_dir",
    "generate",
    "rack_id",
    "satellite_id",
]
