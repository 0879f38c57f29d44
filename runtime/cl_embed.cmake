# runtime/cl_embed.cmake -- turns an OpenCL C file into a C file defining it as
# a string: cmake -DIN=cl_kernels.cl -DOUT=cl_kernels_src.c -DNAME=sym -P cl_embed.cmake
file(READ "${IN}" text)
string(REPLACE "\\" "\\\\" text "${text}")
string(REPLACE "\"" "\\\"" text "${text}")
string(REPLACE "\n" "\\n\"\n\"" text "${text}")
file(WRITE "${OUT}.tmp" "/* generated from ${IN} by runtime/cl_embed.cmake; do not edit */\nconst char ${NAME}[] =\n\"${text}\";\n")
file(RENAME "${OUT}.tmp" "${OUT}")
