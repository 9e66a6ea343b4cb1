"""Helpers for 'Deep Learning Performance Optimization: From Theory to Practice'.

One concern per module; learners are welcome to read them:
- hardware: device choice and the hardware report
- precision / gpu: autocast and GradScaler the current way; GPU-only copies and their overlap, TF32, CUDA graphs
- compile_timing: forget what this process compiled, to time torch.compile's first call cold and warm
- hardware_checks: chapter 3's exercise checks
- measure: latency (torch.utils.benchmark), per-call percentiles, throughput, comparison tables, per-layer times
- claims: speed-ups with a 95% interval over paired rounds, and the verdict on a claimed threshold
- memory: peak memory of a block of work
- cost: parameters, FLOPs, serialized size
- phases: time the phases of a training step
- data / models / training: the digits data, small models, plain loops
- images / loading: the digits as JPEG files on disk, Datasets, DataLoader measurements
- ledger: the course's results ledger (measured results and claims)
- threads: spinning processes that keep cores busy, for oversubscription experiments
- layers / pruning / zoo: depthwise separable conv, channel pruning, torchvision architectures
- roofline / folds: a layer on the roofline; accuracy over cross-validation folds
- plots / widgets / checks / source: charts, live controls, exercise checks, showing helper code
"""

from .chapter import setup_chapter
from .claims import Claim, Ratio, claims_table, make_claim, paired_ratio, report_claim, timing_ratio
from .checks import check_choice, check_function, check_number
from .cost import count_flops, count_parameters, model_cost, serialized_size_bytes
from .data import DigitsSplit, PerSampleDigits, digits_folds, hold_out, load_digits_split, tensor_loader, upsample
from .compile_timing import forget_compiled_code
from .gpu import (
    compare_copy_compute_overlap, compare_host_to_device, compare_tf32_matmul, copy_beside_compute, cuda_graph_replay,
    launch_versus_completion_ms, pin_memory_cost,
)
from .hardware_checks import (
    check_activation_bytes_prediction, check_break_even, check_loss_scale, exercise_mlp,
)
from .hardware import HardwareReport, hardware_report, pick_device
from .images import (
    BatchedCache, DecodedCache, ObjectListCache, RecordArrays, RecordList, cache_root, decode_all, decode_stacked,
    evict_from_page_cache, file_index, image_folder, read_bytes, time_cold_and_warm_reads, time_reads_interleaved,
    write_digit_images, write_shard,
)
from .layers import DepthwiseSeparableConv, same_padding, separable_cost_ratio
from .ledger import ledger_path, ledger_table, load_claims, load_ledger, make_entry, record_chapter
from .measure import (
    Percentiles, Timing, compare_variants, latency_percentiles, measure_interleaved, measure_latency,
    measure_percentiles, synchronize, synchronized_clock, throughput, time_layers, time_layers_interleaved,
    timing_table,
)
from .loading import (
    LoaderTiming, child_pids, loader_ratio, loader_table, make_loader, measure_loader, measure_loaders,
    check_pipeline_choice, check_throughput_prediction, make_train_step, measure_training, new_child_processes,
    normalize_batch, prefetched_batches, start_method, train_images_per_s, WorkerPids,
    training_throughput, worker_private_memory_bytes,
)
from .memory import track_peak_memory
from .models import small_cnn
from .roofline import conv_min_bytes, depthwise_intensity, measure_roofs
from .precision import (
    PRECISIONS, amp_train_step, autocast_mode, check_precision, explain_precision, fp32_math, inference_latency,
    make_grad_scaler, output_error, precision_costs, precision_mode, precision_point, precision_sweep,
    precision_workload, relative_error, saved_activation_bytes, train_step_latency, training_copy,
)
from .phases import PhaseTimes, compare_step_phases, time_step_phases
from .plots import pareto_front, plot_breakdown, plot_comparison, plot_roofline, plot_sweep, plot_tradeoff
from .folds import compare_folds, fold_table, wilson_interval
from .pruning import filter_importance, l1_filter_ranking, per_conv_ratios, prune_channels
from .source import show_source
from .training import evaluate_accuracy, train_epochs
from .widgets import live_control
from .zoo import ARCHITECTURES, build_architecture, published_gflops, published_top1
