// darknet's own forward in training mode, for tests/darknet/test_loss_darknet_c.py: the network of CFG
// on INPUT (float32, batch x inputs) with TRUTH (float32, batch x max boxes x 6: x, y, w, h, class,
// track id); writes every [yolo] layer's delta to OUT and its cost to stderr.
// Built against a darknet checkout compiled with LIBSO=1 (AlexeyAB/darknet's Makefile):
//   gcc -I$DARKNET/include -I$DARKNET/src yolo_delta.c -L$DARKNET -ldarknet -lm -lpthread
// usage: yolo_delta CFG INPUT.f32 TRUTH.f32 OUT.f32
#include <stdio.h>
#include <stdlib.h>

#include "darknet.h"
#include "network.h"
#include "parser.h"

static float* read_floats(const char* path, size_t* n) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  float* buf = malloc(sz);
  if (fread(buf, 1, sz, f) != (size_t)sz) {
    perror("read");
    exit(1);
  }
  fclose(f);
  *n = sz / sizeof(float);
  return buf;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage\n");
    return 2;
  }
  network net = parse_network_cfg_custom(argv[1], 0, 0);
  size_t nin, ntruth;
  float* input = read_floats(argv[2], &nin);
  float* truth = read_floats(argv[3], &ntruth);
  if (nin != (size_t)(net.inputs * net.batch)) {
    fprintf(stderr, "input %zu != %d\n", nin, net.inputs * net.batch);
    return 1;
  }
  network_state state = {0};
  state.net = net;
  state.input = input;
  state.truth = truth;
  state.train = 1;
  state.delta = 0;
  forward_network(net, state);
  FILE* out = fopen(argv[4], "wb");
  for (int i = 0; i < net.n; ++i) {
    layer l = net.layers[i];
    if (l.type != YOLO) continue;
    fwrite(l.delta, sizeof(float), l.outputs * l.batch, out);
    fprintf(stderr, "layer %d yolo %dx%dx%d cost %.9g truths %d/%zu\n", i, l.w, l.h, l.c, *l.cost, l.truths,
            ntruth / net.batch);
  }
  fclose(out);
  return 0;
}
