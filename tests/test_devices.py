"""wsss_common.devices: the machine line that README's numbers and `make demo` name."""
from wsss_common.devices import cpu_summary

# Two VMs whose model name is the same "AMD EPYC": the family/model and torch's vector level tell them apart.
MILAN = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
cpu MHz\t\t: 2445.406
flags\t\t: fpu avx2 fma
processor\t: 1
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
cpu MHz\t\t: 2445.406
"""
GENOA = MILAN.replace("model\t\t: 1", "model\t\t: 17").replace("2445.406", "2595.124")


def test_the_summary_tells_two_same_named_cpus_apart():
    milan, genoa = cpu_summary(MILAN, 2, "AVX2"), cpu_summary(GENOA, 2, "AVX512")
    assert milan == "AMD EPYC, family 25 model 1, 2 cores, 2445 MHz, torch AVX2"
    assert genoa == "AMD EPYC, family 25 model 17, 2 cores, 2595 MHz, torch AVX512"


def test_the_first_processor_block_is_the_one_described():
    mixed = MILAN + "processor\t: 2\nmodel name\t: Other CPU\n"
    assert cpu_summary(mixed, 3).startswith("AMD EPYC, family 25 model 1, 3 cores")


def test_an_arm_cpuinfo_without_family_still_gives_a_line():
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nHardware\t: BCM2835\n"
    assert cpu_summary(arm, 4, "DEFAULT") == "BCM2835, 4 cores, torch DEFAULT"
    assert cpu_summary("", 1) == "unknown CPU, 1 cores"
