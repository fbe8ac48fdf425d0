//! `tools/list` cost: filtering a table of 200 tools for one caller, as the server does on
//! every `tools/list` request (role hierarchy, scopes, and a clone of each visible listing).
//!
//! The 200 tools repeat one pattern of ten: four `viewer` tools, one `viewer` tool that also
//! needs the `data:read` scope, two `editor` tools, one `editor` tool that needs
//! `data:write`, one `admin` tool and one public tool. A viewer without scopes sees 100 of
//! them; an admin holding both scopes sees all 200.
//!
//! Run with `cargo bench -p mcp-gatekeeper --bench list`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_gatekeeper::{__bench::Catalog, AuthMethod, Principal, Roles, mcp_tools};

#[derive(Roles)]
enum Role {
    Viewer,
    Editor,
    Admin,
}

struct Tools;

/// Expands to one `#[mcp_tools]` impl block with one tool per `name(access rule)`.
///
/// The return type is passed in rather than written here: `#[mcp_tools]` currently binds the
/// handler's result with the span of the method name and reads it with the span of the return
/// type, so the two must come from the same hygiene context.
macro_rules! tools {
    (returns $ret:ident; $($name:ident($($rule:tt)*))*) => {
        #[mcp_tools(roles = Role)]
        impl Tools {
            $(
                /// A tool of the benchmark table.
                ///
                /// # Arguments
                /// * `key` - The key to act on.
                #[mcp_tool($($rule)*)]
                fn $name(&self, key: String) -> $ret {
                    key
                }
            )*
        }
    };
}

tools! {
    returns String;
    t000(role = "viewer", read_only)
    t001(role = "viewer", read_only)
    t002(role = "viewer")
    t003(role = "viewer")
    t004(role = "viewer", scope = "data:read", read_only)
    t005(role = "editor")
    t006(role = "editor", idempotent)
    t007(role = "editor", scope = "data:write")
    t008(role = "admin", destructive)
    t009(public)
    t010(role = "viewer", read_only)
    t011(role = "viewer", read_only)
    t012(role = "viewer")
    t013(role = "viewer")
    t014(role = "viewer", scope = "data:read", read_only)
    t015(role = "editor")
    t016(role = "editor", idempotent)
    t017(role = "editor", scope = "data:write")
    t018(role = "admin", destructive)
    t019(public)
    t020(role = "viewer", read_only)
    t021(role = "viewer", read_only)
    t022(role = "viewer")
    t023(role = "viewer")
    t024(role = "viewer", scope = "data:read", read_only)
    t025(role = "editor")
    t026(role = "editor", idempotent)
    t027(role = "editor", scope = "data:write")
    t028(role = "admin", destructive)
    t029(public)
    t030(role = "viewer", read_only)
    t031(role = "viewer", read_only)
    t032(role = "viewer")
    t033(role = "viewer")
    t034(role = "viewer", scope = "data:read", read_only)
    t035(role = "editor")
    t036(role = "editor", idempotent)
    t037(role = "editor", scope = "data:write")
    t038(role = "admin", destructive)
    t039(public)
    t040(role = "viewer", read_only)
    t041(role = "viewer", read_only)
    t042(role = "viewer")
    t043(role = "viewer")
    t044(role = "viewer", scope = "data:read", read_only)
    t045(role = "editor")
    t046(role = "editor", idempotent)
    t047(role = "editor", scope = "data:write")
    t048(role = "admin", destructive)
    t049(public)
    t050(role = "viewer", read_only)
    t051(role = "viewer", read_only)
    t052(role = "viewer")
    t053(role = "viewer")
    t054(role = "viewer", scope = "data:read", read_only)
    t055(role = "editor")
    t056(role = "editor", idempotent)
    t057(role = "editor", scope = "data:write")
    t058(role = "admin", destructive)
    t059(public)
    t060(role = "viewer", read_only)
    t061(role = "viewer", read_only)
    t062(role = "viewer")
    t063(role = "viewer")
    t064(role = "viewer", scope = "data:read", read_only)
    t065(role = "editor")
    t066(role = "editor", idempotent)
    t067(role = "editor", scope = "data:write")
    t068(role = "admin", destructive)
    t069(public)
    t070(role = "viewer", read_only)
    t071(role = "viewer", read_only)
    t072(role = "viewer")
    t073(role = "viewer")
    t074(role = "viewer", scope = "data:read", read_only)
    t075(role = "editor")
    t076(role = "editor", idempotent)
    t077(role = "editor", scope = "data:write")
    t078(role = "admin", destructive)
    t079(public)
    t080(role = "viewer", read_only)
    t081(role = "viewer", read_only)
    t082(role = "viewer")
    t083(role = "viewer")
    t084(role = "viewer", scope = "data:read", read_only)
    t085(role = "editor")
    t086(role = "editor", idempotent)
    t087(role = "editor", scope = "data:write")
    t088(role = "admin", destructive)
    t089(public)
    t090(role = "viewer", read_only)
    t091(role = "viewer", read_only)
    t092(role = "viewer")
    t093(role = "viewer")
    t094(role = "viewer", scope = "data:read", read_only)
    t095(role = "editor")
    t096(role = "editor", idempotent)
    t097(role = "editor", scope = "data:write")
    t098(role = "admin", destructive)
    t099(public)
    t100(role = "viewer", read_only)
    t101(role = "viewer", read_only)
    t102(role = "viewer")
    t103(role = "viewer")
    t104(role = "viewer", scope = "data:read", read_only)
    t105(role = "editor")
    t106(role = "editor", idempotent)
    t107(role = "editor", scope = "data:write")
    t108(role = "admin", destructive)
    t109(public)
    t110(role = "viewer", read_only)
    t111(role = "viewer", read_only)
    t112(role = "viewer")
    t113(role = "viewer")
    t114(role = "viewer", scope = "data:read", read_only)
    t115(role = "editor")
    t116(role = "editor", idempotent)
    t117(role = "editor", scope = "data:write")
    t118(role = "admin", destructive)
    t119(public)
    t120(role = "viewer", read_only)
    t121(role = "viewer", read_only)
    t122(role = "viewer")
    t123(role = "viewer")
    t124(role = "viewer", scope = "data:read", read_only)
    t125(role = "editor")
    t126(role = "editor", idempotent)
    t127(role = "editor", scope = "data:write")
    t128(role = "admin", destructive)
    t129(public)
    t130(role = "viewer", read_only)
    t131(role = "viewer", read_only)
    t132(role = "viewer")
    t133(role = "viewer")
    t134(role = "viewer", scope = "data:read", read_only)
    t135(role = "editor")
    t136(role = "editor", idempotent)
    t137(role = "editor", scope = "data:write")
    t138(role = "admin", destructive)
    t139(public)
    t140(role = "viewer", read_only)
    t141(role = "viewer", read_only)
    t142(role = "viewer")
    t143(role = "viewer")
    t144(role = "viewer", scope = "data:read", read_only)
    t145(role = "editor")
    t146(role = "editor", idempotent)
    t147(role = "editor", scope = "data:write")
    t148(role = "admin", destructive)
    t149(public)
    t150(role = "viewer", read_only)
    t151(role = "viewer", read_only)
    t152(role = "viewer")
    t153(role = "viewer")
    t154(role = "viewer", scope = "data:read", read_only)
    t155(role = "editor")
    t156(role = "editor", idempotent)
    t157(role = "editor", scope = "data:write")
    t158(role = "admin", destructive)
    t159(public)
    t160(role = "viewer", read_only)
    t161(role = "viewer", read_only)
    t162(role = "viewer")
    t163(role = "viewer")
    t164(role = "viewer", scope = "data:read", read_only)
    t165(role = "editor")
    t166(role = "editor", idempotent)
    t167(role = "editor", scope = "data:write")
    t168(role = "admin", destructive)
    t169(public)
    t170(role = "viewer", read_only)
    t171(role = "viewer", read_only)
    t172(role = "viewer")
    t173(role = "viewer")
    t174(role = "viewer", scope = "data:read", read_only)
    t175(role = "editor")
    t176(role = "editor", idempotent)
    t177(role = "editor", scope = "data:write")
    t178(role = "admin", destructive)
    t179(public)
    t180(role = "viewer", read_only)
    t181(role = "viewer", read_only)
    t182(role = "viewer")
    t183(role = "viewer")
    t184(role = "viewer", scope = "data:read", read_only)
    t185(role = "editor")
    t186(role = "editor", idempotent)
    t187(role = "editor", scope = "data:write")
    t188(role = "admin", destructive)
    t189(public)
    t190(role = "viewer", read_only)
    t191(role = "viewer", read_only)
    t192(role = "viewer")
    t193(role = "viewer")
    t194(role = "viewer", scope = "data:read", read_only)
    t195(role = "editor")
    t196(role = "editor", idempotent)
    t197(role = "editor", scope = "data:write")
    t198(role = "admin", destructive)
    t199(public)
}

fn bench_list(c: &mut Criterion) {
    let catalog = Catalog::<Tools>::new().expect("the tool table builds");
    let viewer = Principal::builder(AuthMethod::Jwt, "u")
        .role("viewer")
        .build();
    let admin = Principal::builder(AuthMethod::Jwt, "u")
        .role("admin")
        .scopes(["data:read", "data:write"])
        .build();
    assert_eq!(catalog.list_for(&viewer), 100);
    assert_eq!(catalog.list_for(&admin), 200);

    let mut group = c.benchmark_group("list_200_tools");
    group.bench_function("viewer", |b| {
        b.iter(|| catalog.list_for(black_box(&viewer)))
    });
    group.bench_function("admin", |b| b.iter(|| catalog.list_for(black_box(&admin))));
    group.finish();
}

criterion_group!(benches, bench_list);
criterion_main!(benches);
