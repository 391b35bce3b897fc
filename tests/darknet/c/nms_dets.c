// darknet's detections for one input: network_predict, get_network_boxes (relative boxes, no
// letterbox) and the NMS the last layer's nms_kind names, as detector.c's test_detector runs them.
// usage: nms_dets CFG INPUT.f32 THRESH NMS_THRESH OUT.txt
// writes one line per (box, class) above THRESH to OUT.txt (darknet prints its own to stdout):
// class score x y w h, the box in relative units
#include <stdio.h>
#include <stdlib.h>

#include "box.h"
#include "darknet.h"
#include "network.h"
#include "parser.h"

int main(int argc, char** argv) {
  if (argc != 6) return 2;
  network net = parse_network_cfg_custom(argv[1], 1, 1);
  const float thresh = atof(argv[3]), nms = atof(argv[4]);
  float* in = malloc(net.inputs * sizeof(float));
  FILE* f = fopen(argv[2], "rb");
  if (!f || fread(in, sizeof(float), net.inputs, f) != (size_t)net.inputs) return 1;
  fclose(f);
  network_predict(net, in);
  int nboxes = 0;
  detection* dets = get_network_boxes(&net, net.w, net.h, thresh, 0.5, 0, 1, &nboxes, 0);
  layer l = net.layers[net.n - 1];
  if (l.nms_kind == DEFAULT_NMS)
    do_nms_sort(dets, nboxes, l.classes, nms);
  else
    diounms_sort(dets, nboxes, l.classes, nms, l.nms_kind, l.beta_nms);
  FILE* out = fopen(argv[5], "w");
  if (!out) return 1;
  for (int i = 0; i < nboxes; ++i)
    for (int c = 0; c < l.classes; ++c)
      if (dets[i].prob[c] > thresh)
        fprintf(out, "%d %.9g %.9g %.9g %.9g %.9g\n", c, dets[i].prob[c], dets[i].bbox.x, dets[i].bbox.y,
                dets[i].bbox.w, dets[i].bbox.h);
  fclose(out);
  free_detections(dets, nboxes);
  free(in);
  return 0;
}
