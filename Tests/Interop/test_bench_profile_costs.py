"""bench/profile_costs.py: which part of AgentTrace a profile sample is given to, and the per-span gap
between two rows. Stacks are written leaf first, as `perf script -F ip,sym` prints them."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import profile_costs  # noqa: E402

NIO_READ = "$s8NIOPosix19SelectableEventLoopC3runyyKF"
INGEST = "$s9Receivers11TraceIngestV6ingest_6format11compression2on7NIOCore15EventLoopFutureCyAA0C7OutcomeOGAC4BodyO_AC6FormatOAC11CompressionOAH0iJ0_ptF"
READER = "$s9TraceWire18OTLPProtobufReaderV4span33_B67EB8943BB508EE46597352DE2C0226LLy0A5Model4SpanVAA13ProtobufInputVzAA17OTLPDecodingErrorVYKF"
RUNNER = "$s8Pipeline0A6RunnerC3run33_F0DDF290D6245BFC3C6B115059870AEDLL__6record3nowSay10TraceModel9SpanBatchVG_s6UInt64VSgtSnySiG_AknMtYaFTY0_"
TAIL_PROCESS = "$s10Processors21TailSamplingProcessorC7process_3nowSay10TraceModel9SpanBatchVGAH_s6UInt64VtF"
TAIL_SETTLE = "$s10Processors21TailSamplingProcessorC6settle33_850F01BFB874584FBDD47D76ADA2EC81LL_2at_8evicting3now4into5statey10TraceModel0Q2IDV_SiAA0C8DecisionOSbs6UInt64VSa"
DECODE_AGAIN = "$s9TraceWire17OTLPProtobufCodecC13decodeRequesty0A5Model9SpanBatchVSays5UInt8VGAA17OTLPDecodingErrorVYKF"
GRAPH = "$s12ServiceGraph0aB9ProcessorC7process_3nowSay10TraceModel9SpanBatchVGAH_s6UInt64VtF"
QUEUED = "$s9Exporters14QueuedExporterC4sendyyYaF"
ZIPKIN = "$s9TraceWire10ZipkinSpanV4json6writeryAA10JSONWriterVz_tF"
# A generic specialized for a type of agent_enrichment, shared by the linker with other callers.
SHARED_SPECIALIZATION = "$ss22_ContiguousArrayBufferV20_consumeAndCreateNew14bufferIsUnique15minimumCapacity13growForAppendAByxGSb_SiSbtF10Processors24AgentEnrichmentProcessorC13Configu"


def test_a_page_fault_is_fresh_memory_wherever_it_happens():
    stack = ["clear_page_erms", "asm_exc_page_fault", "__memmove_avx512_unaligned_erms", TAIL_PROCESS, RUNNER]
    assert profile_costs.part_of(stack) == "fresh memory (kernel page faults)"


def test_a_stage_owns_the_work_it_calls():
    assert profile_costs.part_of(["swift_release", GRAPH, RUNNER]) == "service_graph"
    assert profile_costs.part_of(["malloc", READER, TAIL_PROCESS, RUNNER]) == "tail_sampling"


def test_tail_sampling_decoding_kept_traces_is_shown_apart_from_request_decoding():
    assert profile_costs.part_of([READER, DECODE_AGAIN, TAIL_SETTLE, TAIL_PROCESS, RUNNER]) == \
        "tail_sampling: decoding kept traces again"
    assert profile_costs.part_of([READER, INGEST, NIO_READ]) == "decoding requests"


def test_exporters_are_named_by_the_sender_in_the_stack():
    assert profile_costs.part_of(["memcpy", ZIPKIN, QUEUED]) == "zipkin exporter"
    assert profile_costs.part_of(["memcpy", QUEUED]) == "exporters"


def test_a_type_named_inside_a_specialization_is_not_its_stage():
    assert profile_costs.part_of([SHARED_SPECIALIZATION, READER, INGEST, NIO_READ]) == "decoding requests"


def test_the_pipeline_destroying_a_batch_is_freeing_not_queueing():
    destroy = "$s8Pipeline17BoundedBatchQueueC4ItemOWOe"
    offer = "$s8Pipeline17BoundedBatchQueueC5offer_2onAA12OfferOutcomeO10TraceModel04SpanC0V_7NIOCore9EventLoop_ptF"
    assert profile_costs.part_of(["$s10TraceModel9AttributeVwxx", destroy, RUNNER]) == "freeing batches let go"
    assert profile_costs.part_of(["swift_release", RUNNER]) == "freeing batches let go"
    assert profile_costs.part_of(["_raw_spin_unlock_irqrestore", offer, INGEST, NIO_READ]) == "pipeline queues"


def test_an_allocator_sample_without_a_caller_is_counted_as_such():
    assert profile_costs.part_of(["_int_malloc", "malloc", "[unknown]"]) == "malloc/free, caller not in the stack"
    assert profile_costs.part_of(["_copy_to_iter", "tcp_recvmsg", NIO_READ]) == "HTTP and sockets"


def test_shares_count_samples_and_reference_counting():
    text = "\n".join(["\t1 swift_retain", f"\t2 {GRAPH}", "", f"\t3 {READER}", f"\t4 {INGEST}", "",
                      f"\t5 swift_release", f"\t6 {READER}", f"\t7 {INGEST}", ""])
    parts, counting = profile_costs.shares(text)
    assert parts == {"service_graph": 1 / 3, "decoding requests": 2 / 3}
    assert counting == 2 / 3


def test_the_gap_is_each_part_per_span_beyond_the_other_row():
    row = ({"tail_sampling": 0.5, "decoding requests": 0.5}, 0.0)  # 2.0 µs a span
    base = ({"decoding requests": 1.0}, 0.0)  # 1.0 µs a span
    line = profile_costs.gap_line(row, 2.0, base, 1.0)
    assert line == "+1.00 µs a span: tail_sampling +1.00, decoding requests +0.00"
