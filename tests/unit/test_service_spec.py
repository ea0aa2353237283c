"""The service specs: one per service, cheap to import, and consistent among themselves."""

import subprocess
import sys

import pytest

from ragops.specs import SERVICE_SPECS
from ragops_shared.spec import Image, Scaling, ServiceSpec


def test_specs_import_without_the_apps_or_torch() -> None:
    code = (
        "import sys, ragops.specs\n"
        "loaded = [m for m in sys.modules if m == 'torch' or m.endswith('.app')]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_names_and_consumer_groups_are_unique() -> None:
    names = [spec.name for spec in SERVICE_SPECS]
    groups = [group for spec in SERVICE_SPECS for group in spec.consumer_groups]
    assert len(set(names)) == len(names)
    assert len(set(groups)) == len(groups)
    assert all(group.startswith("ragops-") for group in groups), "groups are named after the platform (ragops-*)"


def test_services_scaled_on_lag_have_a_group_to_scale_on() -> None:
    assert all(spec.consumer_groups for spec in SERVICE_SPECS if spec.scaling is Scaling.LAG)


def test_group_is_the_only_consumer_group() -> None:
    assert ServiceSpec("x", Image.LIGHT, Scaling.LAG, ("ragops-x",)).group == "ragops-x"
    with pytest.raises(ValueError, match="2 consumer groups"):
        _ = ServiceSpec("x", Image.LIGHT, Scaling.LAG, ("ragops-a", "ragops-b")).group
    with pytest.raises(ValueError, match="0 consumer groups"):
        _ = ServiceSpec("x", Image.LIGHT, Scaling.SINGLE).group
