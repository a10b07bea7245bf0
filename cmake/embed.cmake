# mikcar_embed_text(TARGET FILE SYMBOL): compiles FILE's text into TARGET as
# `const std::string_view mikcar::embedded::SYMBOL`. Editing FILE re-runs the configure step.
set(MIKCAR_EMBED_TEMPLATE ${CMAKE_CURRENT_LIST_DIR}/embed.cc.in)
function(mikcar_embed_text target file symbol)
  get_filename_component(EMBED_INPUT ${file} ABSOLUTE)
  file(READ ${EMBED_INPUT} EMBED_CONTENT)
  if(EMBED_CONTENT MATCHES "\\)mikcar_embed\"")
    message(FATAL_ERROR "${file} contains the raw-string delimiter )mikcar_embed\"")
  endif()
  set(EMBED_SYMBOL ${symbol})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_${symbol}.cc)
  configure_file(${MIKCAR_EMBED_TEMPLATE} ${out} @ONLY)
  target_sources(${target} PRIVATE ${out})
endfunction()
