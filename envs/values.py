"""The values of the env-side axes, importable without numpy, pufferlib or torch: `perfkit --help`
and every usage error need them before anything heavy is loaded."""

DISPATCH_STYLES = ("getattribute", "getattr", "none")  # how the curriculum wrapper resolves attributes
CONFIG_TIMINGS = ("per-episode", "deferred")  # when the next task's config is applied
CURRICULA = ("single", "mixed")
DESYNC_MODES = ("off", "max-steps", "early-reset")  # how first episodes are desynchronised
DESYNC_RNGS = ("shared", "per-env")
