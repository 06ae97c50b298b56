"""Where a benchmark row's CPU goes: a `perf record -g` of the collector during the row, each sample given
to the part of AgentTrace that caused it, and the difference between two rows per span.

Each sample goes to one part, by its call stack (leaf first):
- a page fault anywhere in the stack: "fresh memory (kernel page faults)" (zeroing pages first touched);
- else the first processor or exporter found from the root down (the stage whose work it is), with tail
  sampling's decoding of kept traces and writing of the held form shown apart;
- else request decoding, freeing the batches the pipeline lets go, the pipeline's queues, threads waking each other (futex, scheduling),
  glibc's malloc/free when perf could not walk past it (it keeps no frame pointers), or HTTP and sockets
  (everything else: the receivers' event loops, the kernel's socket work included).
Retain/release (samples whose leaf is the Swift runtime's reference counting) is reported as well, as a
share across the parts, since it is spent inside all of them.

Used by bench.py (`--profile`); `python3 bench/profile_costs.py PERF_DATA` prints one profile.
"""
import collections
import re
import subprocess
import sys

# (start of a mangled Swift symbol, part), checked from the root of the stack down; the first frame that
# matches decides. A symbol's start names the module and type whose function (or closure) it is; a type's
# name elsewhere in a symbol (a generic specialized for it, which the linker may share) does not count.
STAGES = [
    (re.compile(r"\$s10Processors\d+TailSampling"), "tail_sampling"),
    (re.compile(r"\$s10Processors\d+Anomaly"), "anomaly_detection"),
    (re.compile(r"\$s12ServiceGraph"), "service_graph"),
    (re.compile(r"\$s10Processors\d+AgentEnrich"), "agent_enrichment"),
    (re.compile(r"\$s10Processors\d+(ThresholdTrigger|TriggerEvaluator)"), "threshold_triggers"),
    (re.compile(r"\$s10Processors\d+SpanLimits"), "span_limits"),
    (re.compile(r"\$s10Processors\d+BatchProcessor"), "batch"),
    (re.compile(r"\$s9Exporters"), "exporters"),
]
# A stage's parts shown apart, by a frame anywhere in the sample's stack.
STAGE_PARTS = {
    "tail_sampling": [("OTLPProtobufCodecC13decodeRequest", "tail_sampling: decoding kept traces again"),
                      ("OTLPProtobufWriter", "tail_sampling: writing the held form")],
    "exporters": [("Zipkin", "zipkin exporter"), ("OTLPGRPCSender", "otlp exporter"), ("OTLPExporter", "otlp exporter"),
                  ("OTLPProtobufWriter", "otlp exporter"), ("Nop", "nop exporter")],
}
DECODING = ("OTLPProtobufReader", "OTLPProtobufCodec", "OTLPJSON")
# glibc's allocator has no frame pointers: perf cannot walk from it to its caller.
ALLOCATOR = {"malloc", "_int_malloc", "_int_free", "cfree@GLIBC_2.2.5", "free", "unlink_chunk.constprop.0",
             "malloc_consolidate", "_int_memalign", "sysmalloc"}
# Swift's symbols for destroying a value (outlined destroy, value witness destroy, deallocating deinit).
DESTROYING = ("WOe", "WOh", "wxx", "CfD")
DEALLOCATING = {"swift_arrayDestroy", "_swift_release_dealloc", "swift_deallocObject", "swift_deallocClassInstance",
                "swift_slowDealloc", "cfree@GLIBC_2.2.5", "free"}
REFERENCE_COUNTING = ("swift_retain", "swift_release", "swift_bridgeObjectRetain", "swift_bridgeObjectRelease",
                      "swift_unknownObjectRetain", "swift_unknownObjectRelease")


def part_of(stack):
    """The part a sample belongs to; `stack` is its frames' symbols, leaf first."""
    if any("asm_exc_page_fault" in frame or frame.startswith("clear_page") for frame in stack):
        return "fresh memory (kernel page faults)"
    for frame in reversed(stack):
        for start, part in STAGES:
            if start.match(frame):
                for inner, name in STAGE_PARTS.get(part, []):
                    if any(inner in f for f in stack):
                        return name
                return part
    if any(fragment in frame for frame in stack for fragment in DECODING):
        return "decoding requests"
    if any("8Pipeline" in frame for frame in stack):
        # Most of the pipeline's own samples destroy the batches it lets go (spans, their strings and arrays).
        if stack[0] in REFERENCE_COUNTING or any(frame.endswith(DESTROYING) or frame in DEALLOCATING for frame in stack):
            return "freeing batches let go"
        return "pipeline queues"
    if any("futex" in frame or "dispatch_" in frame or "8Dispatch" in frame for frame in stack) \
            or stack[0].startswith(("finish_task_switch", "__schedule")):
        return "thread wake-ups (futex, scheduling)"
    if not any(frame.startswith("$s") for frame in stack) and any(frame in ALLOCATOR for frame in stack):
        return "malloc/free, caller not in the stack"
    return "HTTP and sockets"


def stacks(perf_script_text):
    """The samples of `perf script -F ip,sym` output: lists of symbols, leaf first."""
    stack = []
    for line in perf_script_text.splitlines():
        line = line.strip()
        if not line:
            if stack:
                yield stack
            stack = []
            continue
        parts = line.split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else parts[0])
    if stack:
        yield stack


def shares(perf_script_text):
    """{part: share of samples}, and the share of samples spent in retain/release."""
    parts = collections.Counter()
    counting = total = 0
    for stack in stacks(perf_script_text):
        total += 1
        parts[part_of(stack)] += 1
        if stack[0] in REFERENCE_COUNTING:
            counting += 1
    if total == 0:
        return {}, 0.0
    return {part: count / total for part, count in parts.items()}, counting / total


def read_profile(perf_data):
    """`shares` of a perf.data file."""
    text = subprocess.run(["perf", "script", "-i", perf_data, "-F", "ip,sym"], capture_output=True, text=True,
                          check=True).stdout
    return shares(text)


def costs_line(profile, cpu_per_million, top=6):
    """The row's parts in µs a span (its CPU s per M spans times each share), largest first."""
    parts, counting = profile
    ordered = sorted(parts.items(), key=lambda item: -item[1])[:top]
    text = ", ".join(f"{part} {share * cpu_per_million:.2f} ({share * 100:.0f}%)" for part, share in ordered)
    return f"{text}; retain/release {counting * 100:.0f}% of samples"


def gap_line(profile, cpu_per_million, base_profile, base_cpu_per_million, top=5):
    """What one row spends a span beyond another, part by part (µs a span), largest first."""
    parts, base = profile[0], base_profile[0]
    deltas = {part: parts.get(part, 0) * cpu_per_million - base.get(part, 0) * base_cpu_per_million
              for part in set(parts) | set(base)}
    total = cpu_per_million - base_cpu_per_million
    ordered = sorted(deltas.items(), key=lambda item: -abs(item[1]))[:top]
    return f"{total:+.2f} µs a span: " + ", ".join(f"{part} {delta:+.2f}" for part, delta in ordered)


if __name__ == "__main__":
    print(costs_line(read_profile(sys.argv[1]), 1.0))
