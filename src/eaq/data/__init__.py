"""Episode datasets: the EpisodeBatch data model, validated on-disk storage, cards, Vaults."""

from eaq.data.batch import SCHEMA_VERSION, DatasetMeta, EpisodeBatch
from eaq.data.errors import DatasetError
from eaq.data.store import load_dataset, save_dataset

__all__ = [
    "SCHEMA_VERSION",
    "DatasetError",
    "DatasetMeta",
    "EpisodeBatch",
    "load_dataset",
    "save_dataset",
]
