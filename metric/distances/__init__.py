from metric.distances.base_distance import BaseDistance
from metric.distances.cosine import CosineSimilarity
from metric.distances.euclidean import EuclideanDistance
from metric.distances.snr import SNRDistance
